"""Evaluation figures of the run report: per-task scores with intervals, the LaMini-style
average against parameter count, and the judge's grade distribution per variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from herd.report_figures import plt, save

VARIANTS = {"base": "#bdbdbd", "pytorch": "#3182bd", "onnx-int8": "#9ecae1", "teacher": "#e6550d"}
LABELS = {"base": "base", "pytorch": "distilled", "onnx-int8": "distilled int8", "teacher": "teacher"}
Z95 = 1.96


def task_scores(summary: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Long frame: student, task, metric, variant, value, half-width of a 95% interval (normal, from the
    per-variant stderr in eval.csv; NaN where it has none). Tasks as the summary lists them, no average."""
    rows = []
    err = {(r.student, r.variant, r.task, r.metric): r.stderr
           for r in table.itertuples() if "stderr" in table.columns}
    for r in summary[summary["task"] != "average"].itertuples():
        for v in VARIANTS:
            if v not in summary.columns or pd.isna(summary.at[r.Index, v]):
                continue
            who = "teacher" if v == "teacher" else r.student
            se = err.get((who, v, r.task, r.metric), np.nan)
            rows.append({"student": r.student, "task": r.task, "metric": r.metric, "variant": v,
                         "value": summary.at[r.Index, v], "ci": Z95 * se if pd.notna(se) else np.nan})
    return pd.DataFrame(rows, columns=["student", "task", "metric", "variant", "value", "ci"])


def task_bars_figure(scores: pd.DataFrame, out: str | Path) -> None:
    """Per student, grouped bars per task: base, distilled, int8, teacher, with 95% intervals."""
    students = sorted(scores["student"].unique()) or ["(no scores)"]
    fig, axes = plt.subplots(len(students), 1, figsize=(10, 3.4 * len(students)), squeeze=False)
    for ax, student in zip(axes[:, 0], students):
        part = scores[scores["student"] == student]
        tasks = list(dict.fromkeys(part["task"]))
        variants = [v for v in VARIANTS if v in set(part["variant"])]
        width = 0.8 / max(len(variants), 1)
        for j, v in enumerate(variants):
            sub = part[part["variant"] == v].set_index("task").reindex(tasks)
            xs = np.arange(len(tasks)) + (j - (len(variants) - 1) / 2) * width
            ax.bar(xs, sub["value"], width, color=VARIANTS[v], label=LABELS[v],
                   yerr=sub["ci"].fillna(0), capsize=2, error_kw={"lw": 0.8})
        metrics = part.drop_duplicates("task").set_index("task")["metric"]
        ax.set_xticks(range(len(tasks)), [f"{t}\n({metrics[t]})" for t in tasks], fontsize=8)
        ax.set_ylabel("score")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{student}: score per task (bars: 95% interval from each variant's stderr)", fontsize=10)
        ax.legend(fontsize=8, ncol=4, loc="upper right")
    save(fig, out)


def average_points(summary: pd.DataFrame) -> pd.DataFrame:
    """The `average` rows: parameters and average score of each student's variants, and the teacher's."""
    avg = summary[summary["task"] == "average"]
    rows = []
    for r in avg.itertuples():
        for v in ("base", "pytorch", "onnx-int8"):
            if v in avg.columns and pd.notna(avg.at[r.Index, v]):
                rows.append({"model": r.student, "variant": v, "parameters": r.parameters,
                             "score": avg.at[r.Index, v]})
    if "teacher" in avg.columns and avg["teacher"].notna().any():
        t = avg[avg["teacher"].notna()].iloc[0]
        rows.append({"model": "teacher", "variant": "teacher", "parameters": t["teacher_parameters"],
                     "score": t["teacher"]})
    return pd.DataFrame(rows, columns=["model", "variant", "parameters", "score"])


def score_vs_parameters_figure(points: pd.DataFrame, out: str | Path) -> None:
    """LaMini's plot: average benchmark score against parameter count (log), base to distilled."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v, colour in VARIANTS.items():
        sub = points[points["variant"] == v]
        ax.scatter(sub["parameters"], sub["score"], color=colour, label=LABELS[v], s=50, zorder=3,
                   edgecolor="black", linewidth=0.5)
    for model, sub in points[points["model"] != "teacher"].groupby("model"):
        base, dist = sub[sub["variant"] == "base"], sub[sub["variant"] == "pytorch"]
        if len(base) and len(dist):
            ax.annotate("", xy=(dist["parameters"].iloc[0], dist["score"].iloc[0]),
                        xytext=(base["parameters"].iloc[0], base["score"].iloc[0]),
                        arrowprops={"arrowstyle": "->", "color": "#636363"})
        ax.annotate(model, (sub["parameters"].iloc[0], sub["score"].max()), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    if (points["parameters"] > 0).all() and len(points):
        ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("average score over the benchmark tasks")
    ax.set_title("Average score against model size (arrow: base to distilled)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, out)


GRADES = [("share_A", "A (valid, acceptable)", "#31a354"), ("share_B", "B (minor flaws)", "#a1d99b"),
          ("share_C", "C (relevant, flawed)", "#fdae6b"), ("share_D", "D (irrelevant/invalid)", "#de2d26"),
          ("share_unparsable", "unparsable grade", "#bdbdbd")]


def judge_figure(judge: pd.DataFrame, out: str | Path) -> None:
    """Share of the judge's grades A-D per answer set (variants, teacher and the two controls)."""
    sets = judge[judge["kind"] == "set"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 0.42 * max(len(sets), 1) + 1.8))
    left = np.zeros(len(sets))
    for col, label, colour in GRADES:
        if col not in sets.columns:
            continue
        vals = sets[col].fillna(0).to_numpy(dtype=float)
        ax.barh(range(len(sets)), vals, left=left, color=colour, label=label)
        left += vals
    ax.set_yticks(range(len(sets)), [f"{s} (n={n})" for s, n in zip(sets["set"], sets["n"])], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of items")
    ax.set_title("Judge's grades per answer set (reference and shuffled are controls)")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    save(fig, out)
