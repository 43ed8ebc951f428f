"""Benchmark training throughput: padded against length-grouped and packed micro-batches.

Each default student (config.yaml) is fine-tuned from its base checkpoint on the same data
with the same seed and the same number of optimizer steps, once per batching mode, through
herd.students.train. Printed per run: useful tokens/s (response tokens the loss is taken on,
per second of training), its ratio to padded, the input tokens/s, the seconds, and the
validation loss after training (packing must not change what is learned: packed steps see
the same examples as padded ones; grouped steps see other groupings of the same data).

The data and base checkpoints are a finished default run's (results/dataset and
results/student_base of the project, or --results DIR of another checkout).

Usage: python bench/train.py [--results results] [--students smollm2-135m t5-mini]
                             [--steps N] [--threads 2] [--modes padded grouped packed]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"learning_rate": 2.0e-5, "epochs": 1, "batch_size": 4, "grad_accum": 1, "max_length": 512,
            "warmup_ratio": 0.05, "weight_decay": 0.0, "max_steps": None}  # config/schema.yaml


def main() -> None:
    from herd import io
    from herd.students import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results", help="a finished default run's results/")
    ap.add_argument("--students", nargs="*", help="default: every student of config.yaml")
    ap.add_argument("--steps", type=int, help="optimizer steps per run (default: the student's epochs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", nargs="*", default=["padded", "grouped", "packed"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    students = yaml.safe_load((ROOT / "config.yaml").read_text())["students"]
    if args.students:
        students = [s for s in students if s["name"] in args.students]
    train_rows = io.read_jsonl(args.results / "dataset/train.jsonl")
    val_rows = io.read_jsonl(args.results / "dataset/validation.jsonl")
    print(f"data: {len(train_rows)} train rows, {len(val_rows)} validation rows, {args.threads} threads")
    print(f"{'student':14} {'batching':9} {'steps':>5} {'useful tok/s':>12} {'x padded':>8} "
          f"{'input tok/s':>11} {'seconds':>8} {'val loss':>9}")
    for s in students:
        settings = {k: s.get(k, v) for k, v in DEFAULTS.items()}
        if args.steps:
            settings["max_steps"] = args.steps
        base_tok_s = None
        for mode in args.modes:
            cfg = TrainConfig(**settings, seed=0, batching=mode)
            with tempfile.TemporaryDirectory(prefix="herd-bench-") as tmp:
                m = train(args.results / "student_base" / s["name"], train_rows, val_rows, cfg,
                          Path(tmp) / "model", threads=args.threads)
            base_tok_s = base_tok_s or (m["useful_tokens_per_second"] if mode == "padded" else None)
            ratio = f"{m['useful_tokens_per_second'] / base_tok_s:.2f}x" if base_tok_s else "-"
            print(f"{s['name']:14} {m['batching']:9} {m['steps']:5d} {m['useful_tokens_per_second']:12.1f} "
                  f"{ratio:>8} {m['tokens_per_second']:11.1f} {m['seconds']:8.1f} {m['val_loss_after']:9.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
