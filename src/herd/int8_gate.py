"""The int8 gate, as the evaluation sees it: did each student's shipped int8 export keep its quality?

Two checks meet here. The export job measured the int8 graph against PyTorch on fixed
prompts (top-1 agreement, greedy tokens; `parity.json`'s `gate`), and the evaluation scored
both on the same benchmark items (`eval_summary`'s `int8_vs_distilled` on the `average` row).
The benchmark check fails a student only when the whole 95% interval of int8 - pytorch lies
below `-max_benchmark_drop` points: with a few dozen items an interval spans +-10 points, and
a gate that failed on noise would fail every run.

The verdict goes into results/eval.csv (column `gate` of the onnx-int8 rows) and, with
`export.int8.on_fail: error`, fails the evaluation table job with the numbers.
"""

from __future__ import annotations

import pandas as pd

from herd.eval_summary import AVERAGE

INT8 = "onnx-int8"
COMPARISON = "int8_vs_distilled"  # eval_summary's name for int8 - pytorch


class Int8GateError(RuntimeError):
    """A student's int8 export lost more quality than `export.int8.gate` allows."""


def benchmark_check(summary: pd.DataFrame, max_drop_points: float | None) -> dict[str, dict]:
    """Per student with an int8 comparison: the average delta (points), its interval, and
    whether the interval lies wholly below -max_drop_points (then `passed` is False)."""
    out = {}
    if COMPARISON not in summary:
        return out
    for _, row in summary[summary["task"] == AVERAGE].iterrows():
        delta = row.get(COMPARISON)
        if delta is None or pd.isna(delta):
            continue
        lo, hi = 100 * row[f"{COMPARISON}_lo"], 100 * row[f"{COMPARISON}_hi"]
        check = {"delta": round(100 * delta, 2), "lo": round(lo, 2), "hi": round(hi, 2),
                 "n": int(row.get(f"{COMPARISON}_n", 0) or 0), "passed": True, "reason": ""}
        if max_drop_points is not None and hi < -max_drop_points:
            check["passed"] = False
            check["reason"] = (f"benchmark average int8 - pytorch {check['delta']:+.1f} points, 95% interval "
                               f"[{lo:+.1f}, {hi:+.1f}] over {check['n']} items, wholly below "
                               f"-{max_drop_points:g} (export.int8.gate.max_benchmark_drop)")
        out[row["student"]] = check
    return out


def verdicts(parity: dict[str, dict], bench: dict[str, dict]) -> dict[str, str]:
    """One line per student: `passed (<flavour>)` or `failed: <reasons>`; students whose
    parity.json predates the gate (no `gate` key) are judged on the benchmark alone."""
    out = {}
    for student in sorted(parity.keys() | bench.keys()):
        report = parity.get(student, {})
        gate = report.get("gate") or {}
        reasons = list(gate.get("reasons") or []) if gate.get("passed") is False else []
        if student in bench and not bench[student]["passed"]:
            reasons.append(bench[student]["reason"])
        flavour = report.get("chosen")
        label = f" ({flavour})" if flavour else ""
        out[student] = f"failed{label}: " + "; ".join(reasons) if reasons else f"passed{label}"
    return out


def annotate(table: pd.DataFrame, verdict_by_student: dict[str, str]) -> pd.DataFrame:
    """results/eval.csv with a `gate` column: the verdict on onnx-int8 rows, empty elsewhere."""
    table = table.copy()
    table["gate"] = [verdict_by_student.get(s, "") if v == INT8 else ""
                     for s, v in zip(table["student"], table["variant"])]
    return table


def enforce(verdict_by_student: dict[str, str], on_fail: str) -> None:
    """Raise Int8GateError naming every failing student when `on_fail` is "error"."""
    failed = {s: v for s, v in verdict_by_student.items() if v.startswith("failed")}
    if failed and on_fail == "error":
        lines = "\n".join(f"  {s}: {v}" for s, v in failed.items())
        raise Int8GateError(
            f"int8 gate failed for {len(failed)} student(s):\n{lines}\n"
            "Loosen export.int8.gate, try other export.int8.flavours, or set export.int8.on_fail: report "
            "to keep the run going and mark the rows in results/eval.csv (column gate).")
