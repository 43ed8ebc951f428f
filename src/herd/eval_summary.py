"""Did distillation help, and did int8 keep it? base -> distilled -> int8, per student and task.

Every eval job writes each item's score. Two variants of a student are compared on the same
items: the difference of their means, with a 95% interval from a paired bootstrap (items
resampled with replacement, the mean per-item difference recomputed; seeded), not from two
independent stderr bars. The average over a student's benchmarks (as the LaMini-LM paper
reports it) gets an interval the same way, items resampled within each task.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from herd.rng import derive_seed

BOOTSTRAP_ITERS = 2000
LEVEL = 0.95
ROUGE_TASK = "teacher_rougeL"  # the teacher-agreement row: reported, not part of the benchmark average
METRIC = {ROUGE_TASK: "rougeL_f1"}
# a benchmark is summarized by the first of these that it has per item (record: em)
METRIC_PREFERENCE = ("acc", "em", "exact_match", "mcc")
TEACHER = "teacher"  # the teacher's own variant: scored once, shown beside every student
VARIANT_ORDER = ("base", "pytorch", "onnx", "onnx-int8", TEACHER)
# (variant, against, column): the questions the summary answers, where both variants were evaluated
COMPARISONS = (("pytorch", "base", "distilled_vs_base"), ("onnx-int8", "pytorch", "int8_vs_distilled"),
               ("onnx", "pytorch", "onnx_vs_distilled"), ("pytorch", TEACHER, "distilled_vs_teacher"))
AVERAGE = "average"


def paired_bootstrap(deltas_by_task: list[np.ndarray], iters: int = BOOTSTRAP_ITERS, seed: int = 0) -> dict:
    """Mean over tasks of each task's mean per-item difference, and its bootstrap interval
    (items resampled within each task). One task: the plain paired bootstrap."""
    deltas_by_task = [np.asarray(d, dtype=float) for d in deltas_by_task if len(d)]
    if not deltas_by_task:
        return {"delta": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    means = np.zeros(iters)
    for d in deltas_by_task:
        means += d[rng.integers(0, len(d), size=(iters, len(d)))].mean(axis=1)
    means /= len(deltas_by_task)
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"delta": float(np.mean([d.mean() for d in deltas_by_task])), "lo": float(lo), "hi": float(hi),
            "n": int(sum(len(d) for d in deltas_by_task))}


def verdict(cmp: dict) -> str:
    if not cmp["n"] or math.isnan(cmp["lo"]):
        return "n/a"
    if cmp["lo"] > 0:
        return "higher"
    if cmp["hi"] < 0:
        return "lower"
    return "no clear difference"


def task_metric(items: list[dict], task: str) -> str:
    """The metric a task is summarized by: ROUGE-L for the teacher-agreement row, else the first
    of METRIC_PREFERENCE the items have (acc for every multiple-choice task)."""
    if task in METRIC:
        return METRIC[task]
    present = {r["metric"] for r in items if r["task"] == task}
    return next((m for m in METRIC_PREFERENCE if m in present), min(present, default="acc"))


def _scores(items: list[dict], task: str, metric: str) -> dict[int, float]:
    return {r["item"]: r["value"] for r in items if r["task"] == task and r["metric"] == metric}


def _paired(a: dict[int, float], b: dict[int, float]) -> np.ndarray:
    common = sorted(a.keys() & b.keys())
    return np.array([a[i] - b[i] for i in common])


def summarize(items: dict[tuple[str, str], list[dict]], parameters: dict[str, int | None], seed: int,
              teacher: list[dict] | None = None, provenance: dict[tuple[str, str], dict[str, str]] | None = None,
              ) -> pd.DataFrame:
    """One row per (student, task) and per student an `average` over its benchmarks: each
    variant's score, and each comparison's delta, interval, verdict and number of paired items.

    `items` maps (student, variant) to that eval job's item scores; `teacher`, the teacher's
    item scores on the same benchmarks (the same seeded items), shown in every student's rows.
    `provenance` maps (student, variant) ("teacher", "teacher" for the teacher) to where each
    task's items came from and how they were prompted: two variants whose items differ there
    are not compared (an item number alone would pair different questions). An average is
    compared only when every one of its tasks is."""
    provenance = provenance or {}
    rows = []
    for student in sorted({s for s, _ in items}):
        own = {v: items[(student, v)] for v in VARIANT_ORDER if (student, v) in items}
        origin = {v: provenance.get((student, v), {}) for v in own}
        if teacher is not None:
            own[TEACHER] = teacher
            origin[TEACHER] = provenance.get((TEACHER, TEACHER), {})
        variants = list(own)
        tasks = sorted({r["task"] for v in variants if v != TEACHER for r in own[v]},
                       key=lambda t: (t == ROUGE_TASK, t))
        pooled = [r for v in variants for r in own[v]]
        metrics = {t: task_metric(pooled, t) for t in tasks}
        scores = {(v, t): _scores(own[v], t, metrics[t]) for v in variants for t in tasks}
        benchmarks = [t for t in tasks if t != ROUGE_TASK]
        for task in [*tasks, AVERAGE] if benchmarks else tasks:
            group = benchmarks if task == AVERAGE else [task]
            row = {"student": student, "parameters": parameters.get(student),
                   "teacher_parameters": parameters.get(TEACHER), "task": task,
                   "metric": "mean" if task == AVERAGE else metrics[task]}
            for v in VARIANT_ORDER:
                per_task = [np.mean(list(scores[(v, t)].values())) for t in group if scores.get((v, t))]
                row[v] = float(np.mean(per_task)) if v in variants and len(per_task) == len(group) else math.nan
            row["n"] = max((len(scores[(v, t)]) for v in variants if v != TEACHER for t in group), default=0)
            for variant, against, name in COMPARISONS:
                if variant not in variants or against not in variants:
                    continue
                if task != AVERAGE and not (scores[(variant, task)] and scores[(against, task)]):
                    continue  # one side has no score here (the teacher on its own references): no comparison
                pairs = [_paired(scores[(variant, t)], scores[(against, t)]) for t in group]
                differ = [t for t in group if origin[variant].get(t, "") != origin[against].get(t, "")]
                if differ or not all(len(p) for p in pairs):
                    cmp = {"delta": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
                    why = (f"n/a: different items or prompts ({', '.join(differ)})" if differ
                           else "n/a: a task without paired items")
                else:
                    cmp = paired_bootstrap(pairs, seed=derive_seed(seed, "eval_summary", student, task, name))
                    why = verdict(cmp)
                row.update({f"{name}": cmp["delta"], f"{name}_lo": cmp["lo"], f"{name}_hi": cmp["hi"],
                            f"{name}_verdict": why, f"{name}_n": cmp["n"]})
            rows.append(row)
    return pd.DataFrame(rows)


def count_parameters(model_dir: str | Path) -> int | None:
    """Parameters of a saved checkpoint, from its safetensors headers, or of a GGUF file, from
    its tensor table (no weights loaded)."""
    from safetensors import safe_open

    if Path(model_dir).suffix == ".gguf":
        from gguf import GGUFReader

        return int(sum(int(t.n_elements) for t in GGUFReader(model_dir).tensors))
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(path, framework="np") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is no dict)
                total += math.prod(f.get_slice(name).get_shape())
    return total


def _pct(x: float) -> str:
    return "" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def _delta(row: pd.Series, name: str) -> str:
    if name not in row or pd.isna(row.get(name)):
        why = row.get(name + "_verdict")
        return why if isinstance(why, str) and why.startswith("n/a:") else ""
    return (f"{100 * row[name]:+.1f} [{100 * row[name + '_lo']:+.1f}, {100 * row[name + '_hi']:+.1f}] "
            f"{row[name + '_verdict']}")


def markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table: scores in percent, deltas in points with 95% intervals.
    Columns of variants nobody evaluated (e.g. onnx, teacher) are left out."""
    shown = [(v, label) for v, label in (("base", "base"), ("pytorch", "distilled"), ("onnx", "onnx"),
                                         ("onnx-int8", "int8"), (TEACHER, "teacher"))
             if v in summary and summary[v].notna().any()]
    deltas = [(name, label) for name, label in (("distilled_vs_base", "distilled - base"),
                                                ("int8_vs_distilled", "int8 - distilled"),
                                                ("distilled_vs_teacher", "distilled - teacher"))
              if name in summary and summary[name].notna().any()]
    lines = ["# Evaluation summary", "",
             ("Scores in percent (ROUGE-L F1 x 100 for teacher_rougeL). Deltas in points with a 95% paired "
              "bootstrap interval over the same items; `higher`/`lower` when the interval excludes 0. "
              "`average` is the mean over the benchmarks (each by its `metric`), as the LaMini-LM paper "
              "reports it."), "",
             *([f"The teacher has {summary['teacher_parameters'].dropna().iloc[0] / 1e6:.1f}M parameters.", ""]
               if "teacher_parameters" in summary and summary["teacher_parameters"].notna().any() else []),
             "| student | parameters | task | metric | n | " + " | ".join(label for _, label in shown + deltas) + " |",
             "|---|---|---|---|---|" + "---|" * (len(shown) + len(deltas))]
    for _, r in summary.iterrows():
        params = "" if pd.isna(r["parameters"]) else f"{int(r['parameters']) / 1e6:.1f}M"
        task = f"**{r['task']}**" if r["task"] == AVERAGE else r["task"]
        cells = [_pct(r[v]) for v, _ in shown] + [_delta(r, name) for name, _ in deltas]
        lines.append(f"| {r['student']} | {params} | {task} | {r['metric']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
