"""The tiny configuration end to end: `snakemake results/eval.csv` on real models and data.

The workflow runs in a copy of the project (so results/ and the teacher cache
start empty) with ../shared beside it, exactly as a user would run it.
"""
import json
import math

import pandas as pd
import pytest
from conftest import SHARED, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present"),
]

def test_eval_table_has_every_student_variant_task_and_metric(tiny_run):
    table = pd.read_csv(tiny_run / "results/eval.csv")
    for col in ["student", "variant", "task", "metric", "value", "n", "model_size_mb", "status"]:
        assert col in table.columns
    assert set(table["student"]) == {"smollm2-135m", "t5-tiny", "teacher"}
    assert set(table["variant"]) == {"base", "pytorch", "onnx-int8", "teacher"}
    assert set(table[table["student"] == "teacher"]["variant"]) == {"teacher"}  # scored once
    for (student, variant), group in table.groupby(["student", "variant"]):
        acc = group[group["metric"] == "acc"]
        assert set(acc["task"]) == {"arc_easy", "boolq", "piqa"}, (student, variant)
        assert (acc["n"] == 5).all() and acc["value"].between(0, 1).all()
        assert (acc["status"] == "ok").all()
        assert (group["source"].str.startswith("local ") | (group["task"] == "teacher_rougeL")).all()
        rouge = group[group["task"] == "teacher_rougeL"]
        if student == "teacher":  # it wrote the references
            assert rouge.empty
            continue
        assert len(rouge) == 1 and 0 <= rouge["value"].iloc[0] <= 1 and rouge["n"].iloc[0] >= 1
    # base -> distilled -> int8, compared item by item with paired intervals
    summary = pd.read_csv(tiny_run / "results/eval_summary.csv")
    assert set(summary["student"]) == {"smollm2-135m", "t5-tiny"}
    for student, group in summary.groupby("student"):
        assert set(group["task"]) == {"arc_easy", "boolq", "piqa", "teacher_rougeL", "average"}, student
        bench = group[group["task"] != "teacher_rougeL"]
        assert bench[["base", "pytorch", "onnx-int8"]].notna().all().all()
        assert (bench["distilled_vs_base_lo"] <= bench["distilled_vs_base"]).all()
        assert (bench["distilled_vs_base"] <= bench["distilled_vs_base_hi"]).all()
        assert bench["distilled_vs_base_verdict"].isin(["higher", "lower", "no clear difference"]).all()
        acc = table[(table["student"] == student) & (table["metric"] == "acc") & (table["task"] == "piqa")]
        piqa = group[group["task"] == "piqa"].iloc[0]
        for variant in ["base", "pytorch", "onnx-int8"]:
            assert piqa[variant] == pytest.approx(acc[acc["variant"] == variant]["value"].iloc[0])
        teacher_piqa = table[(table["student"] == "teacher") & (table["metric"] == "acc") & (table["task"] == "piqa")]
        assert piqa["teacher"] == pytest.approx(teacher_piqa["value"].iloc[0])
        assert piqa["distilled_vs_teacher_n"] == 5  # the same five items
    assert summary["parameters"].gt(0).all() and summary["teacher_parameters"].gt(4e8).all()
    text = (tiny_run / "results/eval_summary.md").read_text()
    assert "distilled - base" in text and "distilled - teacher" in text
    assert "## Instruction following, graded by the judge" in text and "reference" in text
    sizes = table.groupby(["student", "variant"])["model_size_mb"].first()
    for student in ["smollm2-135m", "t5-tiny"]:
        assert sizes[(student, "onnx-int8")] < sizes[(student, "pytorch")]
    assert sizes[("smollm2-135m", "pytorch")] > 400  # the real 135M model, in fp32
    # t5-tiny trained data parallel in two processes (tiny.yaml), smollm2 in one
    metrics = {s: json.loads((tiny_run / f"results/students/{s}/metrics.json").read_text())
               for s in ["smollm2-135m", "t5-tiny"]}
    assert metrics["t5-tiny"]["processes"] == 2 and metrics["smollm2-135m"]["processes"] == 1
    assert all(m["device"] == "cpu" and m["steps"] == 2 and m["tokens"] > 0 for m in metrics.values())


def test_data_artifacts(tiny_run):
    import datasets

    r = tiny_run / "results"
    stats = json.loads((r / "filter/stats.json").read_text())
    assert stats["input"] == stats["kept"] + stats["dropped"] and stats["kept"] > 0
    assert sum(stats["dropped_by_reason"].values()) == stats["dropped"]
    excluded = [json.loads(line) for line in (r / "filter/exclusions.jsonl").read_text().splitlines()]
    assert len(excluded) == stats["dropped"] and all(e["reason"] for e in excluded)

    ds = datasets.load_dataset("parquet", data_files={"train": str(r / "dataset/train.parquet"),
                                                      "validation": str(r / "dataset/validation.parquet")})
    assert {"instruction", "response", "instruction_source"} <= set(ds["train"].column_names)
    assert len(ds["validation"]) >= 1
    rows = list(ds["train"]) + list(ds["validation"])
    sources = {row["instruction_source"] for row in rows}
    assert "alpaca_original" in sources  # "alpaca" rows: counted below, less the truncated answers
    assert sources <= {"self_instruct_without_topic", "self_instruct_with_topic", "alpaca", "alpaca_original"}
    # re-answered by the teacher: all 3, less those it cut at max_tokens (dataset.drop_truncated)
    answered = [a for shard in sorted((r / "responses").glob("*[0-9].jsonl"))
                for a in map(json.loads, shard.read_text().splitlines()) if a["instruction_source"] == "alpaca"]
    assert len(answered) == 3
    assert sum(row["instruction_source"] == "alpaca" for row in rows) == sum(
        a["finish_reason"] != "length" for a in answered)
    dataset_stats = json.loads((r / "dataset/stats.json").read_text())
    assert dataset_stats["dropped"].get("truncated_response", 0) == sum(
        a["finish_reason"] == "length" for shard in (r / "responses").glob("*[0-9].jsonl")
        for a in map(json.loads, shard.read_text().splitlines()))
    alpaca = json.loads((SHARED / "seed/alpaca_5000.json").read_text())
    kept = [row for row in rows if row["instruction_source"] == "alpaca_original"]
    assert sorted(row["response"] for row in kept) == sorted(a["output"] for a in alpaca[:2])  # passed through
    assert all(row["response"].strip() for row in rows)
    card = (r / "dataset/README.md").read_text()
    assert "CC BY-NC 4.0" in card and "rouge_similar" in card
    # licences per seed file: the generated rows carry the examples' Apache-2.0, Alpaca's rows CC BY-NC
    assert "Licences that apply to the rows: Apache-2.0 (" in card and ", CC BY-NC 4.0 (" in card

    summary = json.loads((r / "diversity/summary.json").read_text())
    assert summary["seeds"] == 175 and "seed" in summary["per_source"]
    assert (r / "diversity/map.png").read_bytes()[:4] == b"\x89PNG"

    for student in ["smollm2-135m", "t5-tiny"]:
        parity = json.loads((r / f"export/{student}/parity.json").read_text())
        assert parity["fp32"]["passed"] and parity["fp32"]["max_abs_diff"] <= 1e-3
        metrics = json.loads((r / f"students/{student}/metrics.json").read_text())
        assert metrics["steps"] == 2 and all(math.isfinite(x) for x in metrics["train_loss"])


def test_rerun_is_a_no_op_and_teacher_answers_are_cached(tiny_run):
    proc = snakemake(tiny_run, "results/eval.csv", "--configfile", "config/tiny.yaml", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr
    shard = json.loads((tiny_run / "results/responses/0.stats.json").read_text())
    assert shard["teacher"]["generated"] + shard["teacher"]["cached"] == shard["requests"]
    assert (tiny_run / ".herd-cache/teacher.sqlite").exists()


def _planned_jobs(output: str) -> set[str]:
    """Rule names in the `Job stats` table of a dry run."""
    lines = output.split("Job stats:", 1)[1].splitlines()
    return {line.split()[0] for line in lines[3:] if line.strip() and not line.startswith(("total", "Reasons", "-"))
            and len(line.split()) == 2 and line.split()[1].isdigit()}


def test_a_change_deep_in_a_scripts_imports_reruns_exactly_the_jobs_that_reach_it(tiny_run):
    """herd.rng (request seeds, the train/validation split) is imported by no script directly:
    the jobs that reach it through imports rerun, the others (topics, the teacher's file) do not."""
    rng = tiny_run / "src/herd/rng.py"
    original = rng.read_text()
    try:
        rng.write_text(original + "\n# a change\n")
        proc = snakemake(tiny_run, "results/eval.csv", "--configfile", "config/tiny.yaml", "--dry-run")
    finally:
        rng.write_text(original)
    assert proc.returncode == 0, proc.stderr
    planned = _planned_jobs(proc.stdout + proc.stderr)
    assert {"instructions", "responses", "dataset", "student_base", "students"} <= planned, planned
    assert not planned & {"topics", "teacher_model", "seed_rows"}, planned


def test_bad_config_key_stops_before_any_job(tiny_run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("responses:\n  shards: 2\n  max_token: 10\n")
    proc = snakemake(tiny_run, "results/eval.csv", "--configfile", "config/tiny.yaml", str(bad), "--dry-run")
    assert proc.returncode != 0
    assert "responses: Additional properties are not allowed ('max_token' was unexpected)" in proc.stdout + proc.stderr
