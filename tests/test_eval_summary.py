"""The evaluation summary: base -> distilled -> int8 compared on the same items, with paired
bootstrap intervals (herd.eval_summary)."""
import math

import numpy as np
import pytest

from herd import eval_summary


def test_paired_bootstrap_of_two_items_matches_the_hand_computation():
    """Differences 0 and 1: a resample of two items has mean 0 (p 1/4), 0.5 (p 1/2) or 1 (p 1/4),
    so the 2.5th and 97.5th percentiles of the bootstrap means are 0 and 1."""
    got = eval_summary.paired_bootstrap([np.array([0.0, 1.0])], iters=4000, seed=7)
    assert got == {"delta": 0.5, "lo": 0.0, "hi": 1.0, "n": 2}


def test_paired_bootstrap_is_the_percentiles_of_resampled_means():
    deltas = np.array([1, 0, 0, 1, 1, 1, 0, 1, -1, 1], dtype=float)
    got = eval_summary.paired_bootstrap([deltas], iters=500, seed=3)
    rng = np.random.default_rng(3)  # the same draws, written out
    means = [deltas[rng.integers(0, 10, size=10)].mean() for _ in range(500)]
    assert got["delta"] == pytest.approx(0.5)
    assert got["lo"] == pytest.approx(np.percentile(means, 2.5))
    assert got["hi"] == pytest.approx(np.percentile(means, 97.5))
    assert got["lo"] < 0.5 < got["hi"]


def test_a_constant_difference_has_no_spread_and_no_difference_is_not_significant():
    assert eval_summary.paired_bootstrap([np.ones(30)]) == {"delta": 1.0, "lo": 1.0, "hi": 1.0, "n": 30}
    same = eval_summary.paired_bootstrap([np.zeros(30)])
    assert eval_summary.verdict(same) == "no clear difference"
    assert eval_summary.verdict(eval_summary.paired_bootstrap([])) == "n/a"


def _items(task, values, metric="acc"):
    return [{"task": task, "item": i, "metric": metric, "value": float(v)} for i, v in enumerate(values)]


def test_summary_compares_variants_item_by_item():
    rng = np.random.default_rng(0)
    base = rng.random(40) < 0.3
    distilled = base | (rng.random(40) < 0.6)  # right wherever base was, and on more items
    items = {
        ("s", "base"): _items("arc_easy", base) + _items("piqa", base) + _items("teacher_rougeL", [0.1] * 5, "rougeL_f1"),
        ("s", "pytorch"): _items("arc_easy", distilled) + _items("piqa", distilled)
        + _items("teacher_rougeL", [0.4] * 5, "rougeL_f1"),
        ("s", "onnx-int8"): _items("arc_easy", distilled) + _items("piqa", distilled)
        + _items("teacher_rougeL", [0.4] * 5, "rougeL_f1"),
    }
    summary = eval_summary.summarize(items, {"s": 135_000_000}, seed=1).set_index("task")
    assert list(summary.index) == ["arc_easy", "piqa", "teacher_rougeL", "average"]
    arc = summary.loc["arc_easy"]
    assert arc["base"] == pytest.approx(base.mean()) and arc["pytorch"] == pytest.approx(distilled.mean())
    assert arc["distilled_vs_base"] == pytest.approx(distilled.mean() - base.mean())
    assert arc["distilled_vs_base_lo"] > 0 and arc["distilled_vs_base_verdict"] == "higher"
    assert arc["int8_vs_distilled"] == 0 and arc["int8_vs_distilled_verdict"] == "no clear difference"
    assert math.isnan(arc["onnx"]) and arc["n"] == 40
    avg = summary.loc["average"]  # the benchmarks only, not the teacher-agreement row
    assert avg["pytorch"] == pytest.approx(distilled.mean()) and avg["parameters"] == 135_000_000
    assert summary.loc["teacher_rougeL", "distilled_vs_base"] == pytest.approx(0.3)
    text = eval_summary.markdown(summary.reset_index())
    assert "| s | 135.0M | **average** | mean |" in text and "higher" in text
    assert "teacher" not in text.split("\n")[4]  # no teacher scored: no teacher column


def test_the_teacher_is_compared_with_each_student_on_the_same_items():
    student = np.array([1, 0, 0, 1, 0, 0, 1, 0] * 5, dtype=float)
    teacher = np.ones(40)
    items = {("s", "base"): _items("piqa", student), ("s", "pytorch"): _items("piqa", student)
             + _items("teacher_rougeL", [0.2] * 4, "rougeL_f1")}
    summary = eval_summary.summarize(items, {"s": None}, seed=1, teacher=_items("piqa", teacher)).set_index("task")
    piqa = summary.loc["piqa"]
    assert piqa["teacher"] == 1.0 and piqa["n"] == 40
    assert piqa["distilled_vs_teacher"] == pytest.approx(student.mean() - 1)
    assert piqa["distilled_vs_teacher_verdict"] == "lower"
    assert math.isnan(summary.loc["teacher_rougeL", "teacher"])  # the teacher wrote the references:
    assert math.isnan(summary.loc["teacher_rougeL", "distilled_vs_teacher"])  # nothing to compare, and no n/a text
    assert not isinstance(summary.loc["teacher_rougeL", "distilled_vs_teacher_verdict"], str)
    assert summary.loc["average", "teacher"] == 1.0
    assert "teacher_parameters" in summary and summary["teacher_parameters"].isna().all()
    header = eval_summary.markdown(summary.reset_index()).split("\n")[4]
    assert "| distilled | teacher | distilled - base | distilled - teacher |" in header


def test_a_task_without_accuracy_is_summarized_by_its_own_metric():
    items = {("s", v): _items("record", [1, 0, 1, 1], "em") + _items("record", [0.5] * 4, "f1_like")
             + _items("boolq", [1, 1, 0, 0]) for v in ("base", "pytorch")}
    summary = eval_summary.summarize(items, {}, seed=1).set_index("task")
    assert summary.loc["record", "metric"] == "em" and summary.loc["record", "pytorch"] == 0.75
    assert summary.loc["boolq", "metric"] == "acc"
    assert summary.loc["average", "pytorch"] == pytest.approx((0.75 + 0.5) / 2)


def test_parameters_are_counted_from_the_checkpoint(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert eval_summary.count_parameters(tiny_gpt2) == model.num_parameters()


def test_an_average_is_compared_only_when_every_task_is():
    """The teacher scored task a only: its average is not shown, nor compared on a alone."""
    items = {("s", "pytorch"): _items("a", [1, 0, 1, 0]) + _items("b", [1, 1, 1, 1])}
    summary = eval_summary.summarize(items, {}, seed=1, teacher=_items("a", [0, 0, 0, 0])).set_index("task")
    assert summary.loc["a", "distilled_vs_teacher"] == 0.5 and summary.loc["a", "distilled_vs_teacher_n"] == 4
    avg = summary.loc["average"]
    assert math.isnan(avg["teacher"]) and math.isnan(avg["distilled_vs_teacher"])
    assert avg["distilled_vs_teacher_verdict"] == "n/a: a task without paired items"


def test_variants_whose_items_came_from_elsewhere_are_not_paired():
    """Item 0 of a local file and item 0 of the Hub's split are different questions."""
    items = {("s", "base"): _items("a", [0, 0, 0, 0]), ("s", "pytorch"): _items("a", [1, 1, 1, 1])}
    provenance = {("s", "base"): {"a": "hub | plain"}, ("s", "pytorch"): {"a": "local a.jsonl | plain"}}
    summary = eval_summary.summarize(items, {}, seed=1, provenance=provenance).set_index("task")
    assert math.isnan(summary.loc["a", "distilled_vs_base"])
    assert summary.loc["a", "distilled_vs_base_verdict"] == "n/a: different items or prompts (a)"
    same = {key: {"a": "hub | plain"} for key in provenance}
    summary = eval_summary.summarize(items, {}, seed=1, provenance=same).set_index("task")
    assert summary.loc["a", "distilled_vs_base"] == 1.0 and summary.loc["a", "distilled_vs_base_verdict"] == "higher"


def test_a_gguf_teacher_is_counted_from_its_tensor_table(tmp_path):
    import gguf

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("a", np.zeros((3, 4), dtype=np.float32))
    writer.add_tensor("b", np.zeros(5, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert eval_summary.count_parameters(path) == 17
