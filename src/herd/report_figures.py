"""Figures of the run report for the stages before evaluation: plan and cost, data, training, export.

Each function takes the stage's own records (parsed JSON) and writes one PNG; the rules
in rules/report.smk mark them for `snakemake --report`. herd.report_eval draws evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run without a display
import matplotlib.pyplot as plt

from herd.io import atomic_path

DPI = 110
COLOURS = {"planned": "#9ecae1", "spent": "#3182bd", "pass": "#31a354", "fail": "#de2d26"}


def save(fig, path: str | Path) -> None:
    """Write `fig` atomically as PNG (the suffix of `path` is kept for the report's mime type)."""
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=DPI, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def spent_by_stage(rows: Iterable[dict]) -> dict[str, dict]:
    """Sum ledger rows (herd.cost.ledger_rows) per stage: requests, cached, tokens, dollars."""
    out: dict[str, dict] = defaultdict(lambda: {"requests": 0, "cached": 0, "prompt_tokens": 0,
                                                "completion_tokens": 0, "usd": 0.0})
    for r in rows:
        s = out[r["stage"]]
        s["requests"] += 1
        s["cached"] += bool(r.get("cached"))
        s["prompt_tokens"] += r.get("prompt_tokens") or 0
        s["completion_tokens"] += r.get("completion_tokens") or 0
        s["usd"] += r.get("usd") or 0.0
    return dict(out)


def cost_rows(plan: dict, spent: dict[str, dict], metrics: dict[str, dict]) -> list[dict]:
    """One row per teacher stage and per student: what the plan expected and what the run used."""
    rows = []
    for stage in [*plan["stages"], *sorted(set(spent) - set(plan["stages"]))]:
        p, s = plan["stages"].get(stage, {}), spent.get(stage, {})
        rows.append({"what": f"teacher: {stage}", "unit": "tokens",
                     "planned": (p.get("prompt_tokens", 0) + p.get("completion_tokens", 0)) if p else None,
                     "spent": (s["prompt_tokens"] + s["completion_tokens"]) if s else None,
                     "planned_requests": p.get("requests"), "spent_requests": s.get("requests"),
                     "cached": s.get("cached"), "planned_usd": p.get("usd"), "spent_usd": s.get("usd")})
    for name, st in plan.get("training", {}).get("students", {}).items():
        m = metrics.get(name, {})
        rows.append({"what": f"student: {name}", "unit": "tokens", "planned": st.get("tokens"),
                     "spent": m.get("tokens"), "planned_gpu_hours": st.get("gpu_hours"),
                     "seconds": m.get("seconds")})
    return rows


def plan_cost_figure(rows: list[dict], out: str | Path, usd: tuple[float, float]) -> None:
    """Planned against used tokens per teacher stage and per student (log scale: stages differ 100x)."""
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.8))
    y = range(len(rows))
    planned = [r["planned"] or 0 for r in rows]
    spent = [r["spent"] or 0 for r in rows]
    ax.barh([i + 0.2 for i in y], planned, height=0.4, color=COLOURS["planned"], label="planned")
    ax.barh([i - 0.2 for i in y], spent, height=0.4, color=COLOURS["spent"], label="spent (ledger / metrics)")
    for i, r in enumerate(rows):
        if r["planned"] and r["spent"] is not None:
            ax.text(max(planned[i], spent[i]) * 1.1, i, f"{r['spent'] / r['planned']:.0%} of plan", va="center",
                    fontsize=8)
    ax.set_yticks(list(y), [r["what"] for r in rows])
    ax.invert_yaxis()
    if any(v > 0 for v in planned + spent):
        ax.set_xscale("log")
        ax.set_xlim(right=max(planned + spent) * 4)
    ax.set_xlabel("tokens (teacher: prompt + completion; student: training tokens seen)")
    # "\\$": a bare $ starts matplotlib's math mode
    ax.set_title(f"Plan against spend - teacher dollars: planned \\${usd[0]:.4g}, spent \\${usd[1]:.4g}")
    ax.legend(loc="lower right", fontsize=8)
    save(fig, out)


def filter_drops_figure(filter_stats: dict, dataset_stats: dict, out: str | Path) -> None:
    """Rows dropped per reason: by the instruction filters, then while assembling the dataset."""
    bars = [(f"filter: {r}", n, "#fdae6b") for r, n in sorted(filter_stats["dropped_by_reason"].items(),
                                                               key=lambda kv: -kv[1])]
    bars += [(f"dataset: {r}", n, "#e6550d") for r, n in sorted(dataset_stats.get("dropped", {}).items())]
    failed = dataset_stats.get("failed", 0)
    if failed:
        bars.append(("dataset: failed teacher request", failed, "#a63603"))
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(bars), 1) + 1.8))
    if bars:
        ax.barh(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
        ax.set_yticks(range(len(bars)), [b[0] for b in bars])
        for i, b in enumerate(bars):
            ax.text(b[1], i, f" {b[1]}", va="center", fontsize=8)
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "nothing was dropped", ha="center", transform=ax.transAxes)
    ax.set_xlabel("rows dropped")
    kept = dataset_stats.get("train", 0) + dataset_stats.get("validation", 0)
    ax.set_title(f"Generated {filter_stats['input']}, kept by the filters {filter_stats['kept']}; "
                 f"dataset rows {kept}")
    save(fig, out)


def _val_history(m: dict) -> tuple[list[float], list[float]]:
    """Validation loss points (step, loss): the `val_loss` history when present, else before/after."""
    hist = m.get("val_loss")
    if isinstance(hist, list) and hist:
        if isinstance(hist[0], dict):
            return [h["step"] for h in hist], [h["loss"] for h in hist]
        steps = m.get("steps") or len(hist)
        return [round(i * steps / max(len(hist) - 1, 1)) for i in range(len(hist))], list(hist)
    xs, ys = [], []
    if m.get("val_loss_before") is not None:
        xs.append(0), ys.append(m["val_loss_before"])
    if m.get("val_loss_after") is not None:
        xs.append(m.get("steps") or len(m.get("train_loss", []))), ys.append(m["val_loss_after"])
    return xs, ys


def _speed(m: dict) -> str:
    parts = []
    if m.get("tokens_per_second") is not None:
        parts.append(f"{m['tokens_per_second']:.4g} tok/s")
    if m.get("useful_tokens_per_second") is not None:
        parts.append(f"{m['useful_tokens_per_second']:.4g} useful tok/s")
    parts.append(f"MFU {m['mfu']:.1%}" if m.get("mfu") is not None else "MFU n/a (no GPU peak)")
    return ", ".join(parts)


def training_figure(metrics: dict[str, dict], out: str | Path) -> None:
    """Per student: training loss per optimizer step, and validation loss (before, during, after)."""
    n = max(len(metrics), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.8), squeeze=False)
    for ax, (name, m) in zip(axes[0], sorted(metrics.items())):
        loss = m.get("train_loss") or []
        ax.plot(range(1, len(loss) + 1), loss, color="#3182bd", lw=1, marker="." if len(loss) < 20 else None,
                label="training loss")
        vx, vy = _val_history(m)
        if vx:
            ax.plot(vx, vy, color="#e6550d", marker="o", label="validation loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy loss")
        ax.set_title(f"{name}\n{_speed(m)}", fontsize=9)
        ax.legend(fontsize=8)
    save(fig, out)


def export_rows(parity: dict[str, dict]) -> list[dict]:
    """Per student and exported flavour: size, agreement with PyTorch, gate verdict."""
    rows = []
    for student, p in sorted(parity.items()):
        sizes = p.get("size_mb", {})
        chosen, gate = p.get("chosen"), p.get("gate") or {}
        rows.append({"student": student, "flavour": "pytorch", "size_mb": sizes.get("pytorch"),
                     "top1_agreement": 1.0, "max_abs_diff": 0.0, "passed": None, "note": "reference"})
        for key, size_key in (("fp32", "onnx"), ("int8", "int8")):
            if key in p:
                rows.append({"student": student, "flavour": f"onnx-{key}", "size_mb": sizes.get(size_key),
                             "top1_agreement": p[key].get("top1_agreement"),
                             "max_abs_diff": p[key].get("max_abs_diff"), "passed": p[key].get("passed"),
                             "note": ""})
        for name, f in sorted((p.get("flavours") or {}).items()):
            rows.append({"student": student, "flavour": name, "size_mb": f.get("size_mb"),
                         "top1_agreement": f.get("top1_agreement"), "max_abs_diff": None,
                         "passed": f.get("passed"), "generation_match": f.get("generation_match"),
                         "note": "chosen" if name == chosen else ""})
        if gate:
            rows.append({"student": student, "flavour": "int8 gate", "size_mb": None, "top1_agreement": None,
                         "passed": gate.get("passed"), "note": "; ".join(map(str, gate.get("reasons") or []))})
    return rows


def export_figure(rows: list[dict], out: str | Path) -> None:
    """Size per exported flavour (left) and its top-1 agreement with PyTorch (right), per student."""
    shown = [r for r in rows if r["flavour"] != "int8 gate" and r["size_mb"] is not None]
    labels = [f"{r['student']}\n{r['flavour']}" for r in shown]
    colours = [COLOURS["pass"] if r.get("passed") else COLOURS["fail"] if r.get("passed") is False else "#969696"
               for r in shown]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 0.5 * max(len(shown), 1) + 2), sharey=True)
    y = range(len(shown))
    a.barh(y, [r["size_mb"] for r in shown], color="#6baed6")
    for i, r in enumerate(shown):
        a.text(r["size_mb"], i, f" {r['size_mb']:.0f}", va="center", fontsize=8)
    a.set_yticks(list(y), labels, fontsize=8)
    a.invert_yaxis()
    a.set_xlabel("size on disk (MB)")
    a.set_title("Model size per format")
    b.barh(y, [r["top1_agreement"] or 0 for r in shown], color=colours)
    for i, r in enumerate(shown):
        mark = {True: "passed", False: "failed"}.get(r.get("passed"), r.get("note") or "")
        b.text(r["top1_agreement"] or 0, i, f" {r['top1_agreement']:.2f} {mark}" if r["top1_agreement"] is not None
               else " n/a", va="center", fontsize=8)
    b.set_xlim(0, 1.25)
    b.set_xlabel("top-1 next-token agreement with PyTorch")
    b.set_title("Parity (green: passed its check, red: failed)")
    save(fig, out)
