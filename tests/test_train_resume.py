"""Preemption: a training job killed with SIGKILL resumes from its last checkpoint and ends
with exactly the weights of an uninterrupted run (CPU, one thread, same seed and data)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from test_batching import alpaca_rows

from herd import train_state

RUNNER = """
import json, sys
from pathlib import Path
from herd import logs
from herd.students import TrainConfig, train
a = json.loads(Path(sys.argv[1]).read_text())
logs.to_file(a["log"], append=True)
m = train(a["base"], a["rows"], a["rows"][:4], TrainConfig(**a["cfg"]), a["out"], threads=1,
          checkpoint=a["checkpoint"])
Path(a["out"] + ".json").write_text(json.dumps(m))
"""


def start(tmp_path, name: str, base, rows, **cfg) -> tuple[subprocess.Popen, dict]:
    args = {"base": str(base), "rows": rows, "out": str(tmp_path / name), "log": str(tmp_path / f"{name}.log"),
            "checkpoint": str(tmp_path / f"{name}-checkpoint"),
            "cfg": {"learning_rate": 3e-3, "epochs": 1, "batch_size": 2, "grad_accum": 2, "max_length": 48,
                    "warmup_ratio": 0.1, "weight_decay": 0.01, "max_steps": None, "seed": 3,
                    "batching": "packed", "checkpoint_every": 4, **cfg}}
    (tmp_path / f"{name}.args.json").write_text(json.dumps(args))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / f"{name}.args.json")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, args


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def reference_steps(tmp_path) -> int:
    return json.loads((tmp_path / "whole.json").read_text())["steps"]


def checkpoint_step(path) -> int:
    try:
        return json.loads((path / "meta.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path, tiny_gpt2):
    rows = alpaca_rows(240)  # 240 rows / (2 x 2) = 60 optimizer steps (fewer: rows whose prompt fills
    # max_length 48 are left out), GPT-2 dropout on
    whole, _ = start(tmp_path, "whole", tiny_gpt2, rows)
    finish(whole)

    killed, _ = start(tmp_path, "killed", tiny_gpt2, rows)
    ckpt = tmp_path / "killed-checkpoint"
    deadline = time.monotonic() + 240
    while checkpoint_step(ckpt) < 12 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed").exists()
    k = checkpoint_step(ckpt)
    assert 12 <= k < reference_steps(tmp_path)
    # a checkpoint of another run (different fingerprint) is not taken
    assert train_state.load(ckpt, "another run") is None

    again = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / "killed.args.json")],
                             env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    finish(again)
    metrics = json.loads((tmp_path / "killed.json").read_text())
    reference = json.loads((tmp_path / "whole.json").read_text())
    assert metrics["resumed_from_step"] >= k and metrics["steps"] == reference["steps"] >= 40
    assert "resumed from step" in (tmp_path / "killed.log").read_text()
    assert not ckpt.exists() and not list(tmp_path.glob(".killed-checkpoint*"))  # removed after the save
    assert metrics["train_loss"] == reference["train_loss"] and metrics["useful_tokens"] == reference["useful_tokens"]
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    base = load_file(tiny_gpt2 / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)  # bit for bit
    assert not torch.equal(a["transformer.h.0.mlp.c_fc.weight"], base["transformer.h.0.mlp.c_fc.weight"])


def test_checkpoint_of_other_settings_is_ignored(tmp_path):
    state = {"progress": {"step": 3}, "weights": torch.arange(4.0)}
    train_state.save(tmp_path / "ckpt", state, {"step": 3, "fingerprint": "abc"})
    train_state.save(tmp_path / "ckpt", {**state, "progress": {"step": 6}}, {"step": 6, "fingerprint": "abc"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # only the newest is kept
    assert train_state.load(tmp_path / "ckpt", "abc")["progress"]["step"] == 6
    assert train_state.load(tmp_path / "ckpt", "xyz") is None
    # killed between moving the old one aside and renaming the new one in: the old one counts
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old")
    assert train_state.load(tmp_path / "ckpt", "abc")["progress"]["step"] == 6
    train_state.clear(tmp_path / "ckpt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("change", [{"seed": 4}, {"learning_rate": 1e-3}])
def test_fingerprint_follows_the_settings(tmp_path, tiny_gpt2, change):
    from dataclasses import replace

    from herd.placement import Placement
    from herd.students import TrainConfig, _run_settings

    cfg = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=2, grad_accum=1, max_length=48, warmup_ratio=0.0,
                      weight_decay=0.0, max_steps=None, seed=3, checkpoint_every=4)
    rows = alpaca_rows(8)
    fp = train_state.fingerprint(_run_settings(cfg, Placement()), tiny_gpt2, rows, rows[:2])
    # the interval is not part of the run's result
    assert fp == train_state.fingerprint(_run_settings(replace(cfg, checkpoint_every=9), Placement()),
                                         tiny_gpt2, rows, rows[:2])
    assert fp != train_state.fingerprint(_run_settings(replace(cfg, **change), Placement()), tiny_gpt2, rows, rows[:2])
    assert fp != train_state.fingerprint(_run_settings(cfg, Placement()), tiny_gpt2, rows[1:], rows[:2])
