"""Benchmark scoring speed: herd's lm-eval adapter (HerdLM) against lm-eval's own `hf` model.

Both score the same items of one local multiple-choice task (arc_easy from the
shared benchmark data, converted by herd.benchmarks) with the same checkpoint,
on the CPU, with the same batch size, through the same `run_benchmarks` call.
The two run in turns (--rounds), each side's fastest round counts, so a busy
machine slows both alike. Printed: items/s of each, the ratio, and whether the
two agree item by item (they should match exactly: a check of the adapter too).

The model is the default student's base checkpoint (SmolLM2-135M-Instruct,
dequantized from the packaged GGUF as rule student_base builds it), converted to
a temporary folder unless --model names a Hugging Face checkpoint directory.

Usage: python bench/eval.py [--model DIR] [--task arc_easy] [--items 50] [--batch-size 8]
                            [--threads 2] [--rounds 2] [--root ../shared/data/benchmarks]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared/data/benchmarks"
STUDENT_GGUF = "smollm2-135m-instruct"  # the default student's packaged base model


def build_student_base(out: Path) -> Path:
    from herd import assets

    gguf = out.parent / "model.gguf"
    assets.build_gguf(STUDENT_GGUF, gguf)
    assets.convert_gguf(gguf, out)
    return out


def score(name: str, lm, task: str, root: Path, work: Path, items: int) -> dict:
    from herd import evaluation

    scores = []
    start = time.perf_counter()
    rows = evaluation.run_benchmarks(lm, [task], root, work / name, limit=items, seed=0, items=scores)
    seconds = time.perf_counter() - start
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"{name}: {task} was not scored: {bad[0]['status']}")
    return {"rows": {r["metric"]: r["value"] for r in rows}, "n": rows[0]["n"], "seconds": seconds,
            "items_per_s": rows[0]["n"] / seconds,
            "items": {(s["item"], s["metric"]): s["value"] for s in scores}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="Hugging Face checkpoint directory (default: build the student base)")
    ap.add_argument("--task", default="arc_easy")
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="turns of each side; the fastest counts")
    ap.add_argument("--root", type=Path, default=DEFAULT_DATA, help="benchmark data in its upstream layout")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    from lm_eval.models.huggingface import HFLM

    from herd import evaluation

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or build_student_base(tmp / "student_base")
        model, tokenizer = evaluation.load_variant("pytorch", model_dir, threads=args.threads)
        herd_lm = evaluation.HerdLM(model, tokenizer, batch_size=args.batch_size)
        # lm-eval's own backend loads the same directory itself, as `lm_eval --model hf` would
        hf_lm = HFLM(pretrained=str(model_dir), device="cpu", batch_size=args.batch_size, dtype="float32")
        # warm-up on a few items, so neither side pays first-call costs in the timing
        score("warmup", herd_lm, args.task, args.root, tmp, 2)
        score("warmup-hf", hf_lm, args.task, args.root, tmp, 2)
        runs = {"herd": [], "hf": []}
        for i in range(args.rounds):
            runs["herd"].append(score(f"herd{i}", herd_lm, args.task, args.root, tmp, args.items))
            runs["hf"].append(score(f"hf{i}", hf_lm, args.task, args.root, tmp, args.items))
        herd, hf = (min(runs[k], key=lambda r: r["seconds"]) for k in ("herd", "hf"))

    print(f"model {args.model or STUDENT_GGUF + ' (student base, fp32)'}, task {args.task}, {herd['n']} items, "
          f"batch size {args.batch_size}, {args.threads} threads")
    for name, got in (("herd HerdLM", herd), ("lm-eval hf", hf)):
        metrics = ", ".join(f"{m} {v:.4f}" for m, v in got["rows"].items())
        print(f"  {name:12s} {got['items_per_s']:7.2f} items/s (best of {args.rounds}: {got['seconds']:.1f} s)  {metrics}")
    print(f"  ratio herd / hf: {herd['items_per_s'] / hf['items_per_s']:.2f}x")
    same_rows = herd["rows"] == hf["rows"]
    same_items = herd["items"] == hf["items"]
    differing = sum(herd["items"].get(k) != v for k, v in hf["items"].items())
    print(f"  accuracies agree: {'yes' if same_rows else 'NO'}; per-item scores agree: "
          f"{'yes' if same_items else f'NO ({differing} differ)'}")


if __name__ == "__main__":
    main()
