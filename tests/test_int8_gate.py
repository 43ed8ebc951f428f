"""The int8 gate in the evaluation table (herd.int8_gate): export parity and benchmark deltas
judged together, reported in results/eval.csv and, on request, failing the job."""
import numpy as np
import pandas as pd
import pytest

from herd import eval_summary, int8_gate


def _items(task, values):
    return [{"task": task, "item": i, "metric": "acc", "value": float(v)} for i, v in enumerate(values)]


def _summary(int8_right: np.ndarray, pytorch_right: np.ndarray):
    items = {("s", "pytorch"): _items("arc_easy", pytorch_right) + _items("piqa", pytorch_right),
             ("s", "onnx-int8"): _items("arc_easy", int8_right) + _items("piqa", int8_right)}
    return eval_summary.summarize(items, {"s": 1}, seed=1)


def test_a_clear_loss_beyond_the_allowed_drop_fails_and_names_the_numbers():
    pytorch = np.ones(200)
    int8 = np.ones(200)
    int8[:60] = 0  # 30 points lost on every item set: the interval lies far below -1
    check = int8_gate.benchmark_check(_summary(int8, pytorch), max_drop_points=1.0)["s"]
    assert check["passed"] is False and check["delta"] == pytest.approx(-30.0)
    assert check["hi"] < -1 and "max_benchmark_drop" in check["reason"] and "-30.0" in check["reason"]


def test_noise_inside_the_interval_does_not_fail_the_gate():
    pytorch = np.ones(40)
    int8 = np.ones(40)
    int8[:1] = 0  # one answer lost in 40: -2.5 points, but an interval that reaches 0
    check = int8_gate.benchmark_check(_summary(int8, pytorch), max_drop_points=1.0)["s"]
    assert check["lo"] < -1 < check["hi"] and check["passed"] is True
    # with no drop allowed at all nothing fails on the benchmark either unless the interval is below it
    assert int8_gate.benchmark_check(_summary(int8, pytorch), max_drop_points=None)["s"]["passed"] is True


def test_verdicts_join_the_export_gate_and_the_benchmark_and_mark_eval_csv_rows():
    parity = {"a": {"chosen": "weight-int8", "gate": {"passed": True, "reasons": []}},
              "b": {"chosen": "dynamic", "gate": {"passed": False,
                                                   "reasons": ["top-1 agreement 0.25 < 0.9 (export.int8.gate.min_top1)"]}},
              "c": {}}  # an export from before the gate: judged on the benchmark alone
    bench = {"a": {"passed": True, "reason": ""}, "c": {"passed": False, "reason": "benchmark average -30 points"}}
    got = int8_gate.verdicts(parity, bench)
    assert got == {"a": "passed (weight-int8)",
                   "b": "failed (dynamic): top-1 agreement 0.25 < 0.9 (export.int8.gate.min_top1)",
                   "c": "failed: benchmark average -30 points"}
    table = pd.DataFrame({"student": ["a", "a", "b"], "variant": ["pytorch", "onnx-int8", "onnx-int8"]})
    marked = int8_gate.annotate(table, got)
    assert list(marked["gate"]) == ["", "passed (weight-int8)", got["b"]]

    with pytest.raises(int8_gate.Int8GateError, match=r"(?s)b: failed \(dynamic\): top-1 agreement 0.25.*c: failed"):
        int8_gate.enforce(got, "error")
    int8_gate.enforce(got, "report")  # reported in eval.csv, the run goes on
    int8_gate.enforce({"a": "passed (weight-int8)"}, "error")
