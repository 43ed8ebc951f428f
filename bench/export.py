"""Benchmark the int8 flavours of the exported students against PyTorch and ONNX fp32.

For each student of a finished run (RESULTS/students/{student}/model, and its fp32
export RESULTS/export/{student}/onnx, read only), every int8 flavour of herd.quantize
is written into a scratch folder (--work, never the results tree). Then, per variant
(PyTorch fp32, ONNX fp32, each flavour):

- greedy generation speed: tokens/s at batch 1 with the KV cache, the same prompts
  (the students' own prompt format) and the same number of new tokens for all, after
  a warm-up; the variants take turns (--rounds) and each one's fastest round counts,
  so a busy machine slows all alike;
- size on disk and its ratio to fp32 ONNX;
- top-1 agreement (logits) and generation match (first --gen-tokens greedy tokens)
  against PyTorch, exactly as the export's gate measures them (herd.export.Reference);
- a benchmark average (first metric of each task, as eval.csv reports it) over
  --limit items per benchmark, scored through herd.evaluation like the eval stage,
  with the delta against PyTorch in points.

Usage: python bench/export.py RESULTS [--students smollm2-135m t5-mini]
           [--flavours weight-int8 weight-int4 dynamic-per-channel dynamic] [--block-size 64]
           [--threads 2] [--tokens 32] [--rounds 2] [--limit 334] [--benchmarks arc_easy boolq piqa]
           [--root ../shared/data/benchmarks] [--work /tmp/bench/export]
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared/data/benchmarks"


def speed(model, prompts: list[dict], tokens: int, seq2seq: bool) -> float:
    """Greedy tokens per second over all prompts, batch 1, KV cache on."""
    from herd.export import greedy

    start = time.perf_counter()
    for inputs in prompts:
        greedy(model, inputs, tokens, seq2seq)
    return len(prompts) * tokens / (time.perf_counter() - start)


def bench_average(variant: str, path: Path, tasks: list[str], root: Path, work: Path, limit: int | None,
                  threads: int) -> tuple[float, int, float]:
    """(mean of each task's first metric in points, items scored, seconds)."""
    from herd import evaluation

    model, tokenizer = evaluation.load_variant(variant, path, threads=threads)
    start = time.perf_counter()
    rows = evaluation.run_benchmarks(evaluation.HerdLM(model, tokenizer), tasks, root, work, limit=limit, seed=0)
    seconds = time.perf_counter() - start
    firsts = {}
    for row in rows:
        if row["status"] != "ok":
            raise SystemExit(f"{path}: {row['task']} was not scored: {row['status']}")
        firsts.setdefault(row["task"], row)
    return (100 * sum(r["value"] for r in firsts.values()) / len(firsts), sum(r["n"] for r in firsts.values()),
            seconds)


def bench_student(student: str, args) -> list[dict]:
    import torch

    from herd import evaluation, export, quantize
    from herd.io import dir_size_mb

    model_dir = args.results / "students" / student / "model"
    fp32_dir = args.results / "export" / student / "onnx"
    work = args.work / student
    seq2seq = export._is_encoder_decoder(model_dir)
    if not (fp32_dir / "config.json").is_file():  # no export in the run: make one here
        fp32_dir = work / "onnx"
        if not fp32_dir.is_dir():
            export.export_onnx(model_dir, fp32_dir, seq2seq)
    variants = {"pytorch": ("pytorch", model_dir), "onnx": ("onnx", fp32_dir)}
    quant_s = {}
    for flavour in args.flavours:
        out = work / flavour
        start = time.perf_counter()
        if not (out / "config.json").is_file():
            quantize.quantize_dir(fp32_dir, out, flavour, args.block_size)
        quant_s[flavour] = time.perf_counter() - start
        variants[flavour] = ("onnx-int8", out)

    torch.set_num_threads(args.threads)
    reference = export.Reference(model_dir, seq2seq, args.gen_tokens)
    rows = {name: {"student": student, "variant": name, "size_mb": dir_size_mb(path),
                   "quantize_s": quant_s.get(name, math.nan)} for name, (_, path) in variants.items()}
    for name, (_, path) in variants.items():
        rows[name].update(reference.compare(path) if name != "pytorch" else
                          {"top1_agreement": 1.0, "generation_match": 1.0, "max_abs_diff": 0.0})
    models = {name: evaluation.load_variant(kind, path, threads=args.threads)[0]
              for name, (kind, path) in variants.items()}
    prompts = reference.prompts
    for model in models.values():
        speed(model, prompts[:1], 4, seq2seq)  # warm-up
    best = {name: 0.0 for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            best[name] = max(best[name], speed(model, prompts, args.tokens, seq2seq))
    del models
    for name, (kind, path) in variants.items():
        rows[name]["tokens_per_s"] = best[name]
        if args.limit != 0:
            avg, n, seconds = bench_average(kind, path, args.benchmarks, args.root, work / "bench" / name,
                                            args.limit, args.threads)
            rows[name].update(bench_avg=avg, bench_items=n, bench_s=seconds)
        print(f"  done {student} {name}: {rows[name]}", flush=True)
    base = rows["pytorch"]
    for row in rows.values():
        row["speed_x"] = row["tokens_per_s"] / base["tokens_per_s"]
        row["size_x"] = row["size_mb"] / rows["onnx"]["size_mb"]
        row["bench_delta"] = row.get("bench_avg", math.nan) - base.get("bench_avg", math.nan)
    return list(rows.values())


def main() -> None:
    from herd import export, quantize

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, help="the results folder of a finished run")
    ap.add_argument("--students", nargs="+", default=["smollm2-135m", "t5-mini"])
    ap.add_argument("--flavours", nargs="+", default=list(quantize.FLAVOURS), choices=quantize.FLAVOURS)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per prompt in the speed test")
    ap.add_argument("--gen-tokens", type=int, default=8, help="greedy tokens compared with PyTorch")
    ap.add_argument("--rounds", type=int, default=2, help="turns of each variant; the fastest counts")
    ap.add_argument("--limit", type=int, default=334, help="items per benchmark (0: no benchmark scoring)")
    ap.add_argument("--benchmarks", nargs="+", default=["arc_easy", "boolq", "piqa"])
    ap.add_argument("--root", type=Path, default=DEFAULT_DATA, help="benchmark data in its upstream layout")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench/export"), help="scratch folder for the exports")
    args = ap.parse_args()
    if args.work.resolve().is_relative_to(args.results.resolve()):
        raise SystemExit(f"--work {args.work} lies inside {args.results}: write bench exports elsewhere")
    logging.basicConfig(level=logging.WARNING)

    rows = [row for student in args.students for row in bench_student(student, args)]
    print(f"\n{args.threads} threads, batch 1, {args.tokens} new tokens x {len(export.GENERATION_INSTRUCTIONS)} "
          f"prompts, best of {args.rounds}; block size {args.block_size}; benchmarks {' '.join(args.benchmarks)}, "
          f"limit {args.limit} each")
    head = (f"{'student':14s} {'variant':20s} {'MB':>7s} {'x fp32':>6s} {'tok/s':>7s} {'x torch':>7s} {'top1':>6s} "
            f"{'gen':>5s} {'bench':>6s} {'items':>5s} {'delta':>6s} {'quant s':>7s}")
    print(head)
    for r in rows:
        print(f"{r['student']:14s} {r['variant']:20s} {r['size_mb']:7.1f} {r['size_x']:6.3f} {r['tokens_per_s']:7.1f} "
              f"{r['speed_x']:7.2f} {r['top1_agreement']:6.3f} {r['generation_match']:5.2f} "
              f"{r.get('bench_avg', math.nan):6.2f} {r.get('bench_items', 0):5d} {r['bench_delta']:+6.2f} "
              f"{r['quantize_s']:7.1f}")


if __name__ == "__main__":
    main()
