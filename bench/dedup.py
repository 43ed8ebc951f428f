"""ROUGE-L novelty dedup: herd's RougeNovelty against the plain sequential algorithm.

The reference is Alpaca's loop (generate_instruction.py): rouge_score's
RougeScorer(["rougeL"], use_stemmer=False) tokenizer, every candidate scored
with `rouge_scorer._score_lcs` against every seed and every instruction kept
before it, dropped when the best F1 > threshold. No pruning, one process.

1. real: the Alpaca instructions (seeds: the 175 Self-Instruct tasks), both
   implementations, kept sets asserted identical; also the sharded path
   (novelty_keep_sharded: neighbours found in --workers processes, then the
   verdicts in order), asserted identical too.
2. synthetic: instructions made from the real ones with a seeded RNG: "new"
   ones (about half of the words replaced by words drawn from Alpaca's own text,
   sometimes a topic tail) and near-duplicates of earlier items (a word dropped,
   two swapped, one substituted or inserted). The reference runs on the first
   --ref-size of them (kept sets asserted identical); its time at 20K is
   extrapolated from its measured pairs per second and the exact number of
   pairs the sequential algorithm scores at 20K. Ours is timed at every size,
   streaming (RougeNovelty, as the workflow calls it; the speedups are its) and,
   up to PRIMED_MAX, with ranks primed on all texts (novelty_keep) and sharded
   (novelty_keep_sharded in --workers processes, wall-clock). 2.58M is
   timed with --lamini, else extrapolated with the scaling exponent of the two
   largest sizes.

Times are CPU seconds of this process and of its finished worker processes
(the sharded path's; the machine may be shared), wall-clock seconds beside them,
all measured in this run.
Usage: python bench/dedup.py [--data-dir ../shared/data] [--real-limit 5000]
           [--ref-size 3000] [--sizes 20000 100000] [--million] [--lamini] [--seed 0]
           [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import resource
import time
from collections import Counter
from pathlib import Path

from rouge_score import rouge_scorer

from herd.dedup import RougeNovelty, novelty_keep, novelty_keep_sharded

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.7
LAMINI_SIZE = 2_580_000  # instructions in LaMini-instruction
GOAL_SPEEDUP_20K = 500
GOAL_SECONDS_LAMINI = 3600
PRIMED_MAX = 100_000  # novelty_keep (ranks primed on all texts) is also timed up to this size
NEAR_DUPLICATE_SHARE = 0.25  # synthetic items that are light edits of an earlier item
SUBSTITUTE_PROB = 0.6  # per content word, in a "new" synthetic item
FUNCTION_WORDS = 100  # the most frequent words, never substituted
TOPIC_TAIL_PROB = 0.3
TAILS = ("about {}", "in the context of {}", "related to {}", "for a report on {}")


def reference_keep(candidates: list[str], references: list[str], threshold: float = THRESHOLD):
    """Alpaca's sequential filter, verbatim in substance; returns (keep flags, pairs scored)."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept_tokens = [scorer._tokenizer.tokenize(t) for t in references]
    flags, pairs = [], 0
    for text in candidates:
        tokens = scorer._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(tokens, ref).fmeasure for ref in kept_tokens]
        pairs += len(scores)
        keep = not scores or max(scores) <= threshold
        flags.append(keep)
        if keep:
            kept_tokens.append(tokens)
    return flags, pairs


def sequential_pairs(flags: list[bool], n_references: int) -> int:
    """Pairs the sequential algorithm scores, given its keep flags."""
    pairs, kept = 0, n_references
    for keep in flags:
        pairs += kept
        kept += keep
    return pairs


def load(data_dir: Path):
    alpaca = json.loads((data_dir / "seed/alpaca_5000.json").read_text())
    seeds = [json.loads(line)["instruction"]
             for line in (data_dir / "seed/selfinstruct_seed_tasks.jsonl").read_text().splitlines()]
    words = Counter(w for r in alpaca for field in ("instruction", "input", "output")
                    for w in re.findall(r"[A-Za-z]+", r[field]))
    return [r["instruction"] for r in alpaca], seeds, words


def synthetic(real: list[str], words: Counter, n: int, seed: int = 0) -> list[str]:
    """n instructions built from the real ones; see the module docstring.

    Function words (the FUNCTION_WORDS most frequent words of Alpaca's text) are
    kept, so a "new" item keeps its template ("What is the ... of ...?") and
    content words are drawn by their frequency in Alpaca's text.
    """
    rng = random.Random(seed)
    common = {w.lower() for w, _ in words.most_common(FUNCTION_WORDS)}
    content = Counter({w: c for w, c in words.items() if w.lower() not in common})
    vocab, cumulative = list(content), list(itertools.accumulate(content.values()))

    def draw(k: int) -> list[str]:
        return rng.choices(vocab, cum_weights=cumulative, k=k)

    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < NEAR_DUPLICATE_SHARE:
            w = rng.choice(out).split()
            edit, i = rng.randrange(4), rng.randrange(len(w))
            if edit == 0 and len(w) > 4:
                del w[i]
            elif edit == 1 and len(w) > 1:
                j = i + 1 if i + 1 < len(w) else i - 1
                w[i], w[j] = w[j], w[i]
            elif edit == 2:
                w[i] = draw(1)[0]
            else:
                w.insert(i, draw(1)[0])
        else:
            w = rng.choice(real).split()
            subs = iter(draw(len(w)))
            w = [next(subs) if x.lower().strip(".,?!:;") not in common and rng.random() < SUBSTITUTE_PROB
                 else x for x in w]
            if rng.random() < TOPIC_TAIL_PROB:
                w += rng.choice(TAILS).format(" ".join(draw(rng.randint(1, 2)))).split()
        out.append(" ".join(w))
    return out


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn, *args):
    """(result, CPU seconds of this process and its workers, wall seconds)."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = fn(*args)
    return result, cpu_seconds() - cpu, time.perf_counter() - wall


def streaming_keep(candidates, references):
    """RougeNovelty as the workflow's filter step calls it: one text at a time."""
    novelty = RougeNovelty(references, THRESHOLD)
    return [novelty(t) is None for t in candidates]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def compare(name: str, candidates: list[str], seeds: list[str], workers: int) -> float:
    """Reference and ours on the same candidates; assert equal kept sets; reference pairs/s."""
    (expected, pairs), cpu_ref, wall_ref = timed(reference_keep, candidates, seeds)
    ours, cpu_ours, wall_ours = timed(streaming_keep, candidates, seeds)
    primed, cpu_primed, wall_primed = timed(novelty_keep, candidates, seeds)
    sharded, cpu_sharded, wall_sharded = timed(novelty_keep_sharded, candidates, seeds, THRESHOLD, workers)
    assert ours == expected and primed == expected and sharded == expected, f"kept sets differ on {name}"
    rate = pairs / cpu_ref
    print(f"{name}: identical kept sets, {sum(expected):,} kept of {len(candidates):,}")
    print(f"  reference       {cpu_ref:9.2f} s CPU ({wall_ref:8.2f} s wall), {pairs:,} pairs,"
          f" {rate:,.0f} pairs/s")
    print(f"  ours streaming  {cpu_ours:9.3f} s CPU ({wall_ours:8.3f} s wall)"
          f" -> {cpu_ref / cpu_ours:,.0f}x measured")
    print(f"  ours primed     {cpu_primed:9.3f} s CPU ({wall_primed:8.3f} s wall)"
          f" -> {cpu_ref / cpu_primed:,.0f}x measured")
    print(f"  ours sharded x{workers:<2} {cpu_sharded:9.3f} s CPU ({wall_sharded:8.3f} s wall)"
          f" -> {wall_primed / wall_sharded:.2f}x primed's wall time ({workers} processes + verdicts in order)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / "../shared/data")
    ap.add_argument("--real-limit", type=int, default=5000)
    ap.add_argument("--ref-size", type=int, default=3000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--million", action="store_true", help="also time ours on 1M")
    ap.add_argument("--lamini", action="store_true", help=f"also time ours on {LAMINI_SIZE:,}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="processes of the sharded path")
    args = ap.parse_args()
    real, seeds, words = load(args.data_dir)
    real = real[: args.real_limit]
    print(f"seeds: {len(seeds)} Self-Instruct tasks; threshold {THRESHOLD}; times are CPU seconds of"
          " this process and its workers (the machine is shared), wall-clock in brackets\n")
    compare(f"real ({len(real):,} Alpaca instructions)", real, seeds, args.workers)

    sizes = sorted(set(args.sizes + [1_000_000] * args.million + [LAMINI_SIZE] * args.lamini))
    data = synthetic(real, words, max(sizes + [args.ref_size]), args.seed)
    rate = compare(f"synthetic (first {args.ref_size:,}, seed {args.seed})", data[: args.ref_size], seeds,
                   args.workers)

    print(f"\n{'size':>9} {'kept':>9} {'ours s CPU':>11} {'(wall)':>9} {'primed s':>9}"
          f" {f'sharded x{args.workers} s wall':>19} {'pairs of the sequential alg.':>29} {'reference s':>12}"
          f" {'speedup':>8} {'RSS GiB':>8}")
    times, speedups = {}, {}
    for n in sizes:
        flags, cpu, wall = timed(streaming_keep, data[:n], seeds)
        primed = sharded = "-"
        if n <= PRIMED_MAX:
            flags_primed, cpu_primed, _ = timed(novelty_keep, data[:n], seeds)
            flags_sharded, _, wall_sharded = timed(novelty_keep_sharded, data[:n], seeds, THRESHOLD,
                                                   args.workers)
            assert flags_primed == flags and flags_sharded == flags, "streaming, primed and sharded differ"
            primed, sharded = f"{cpu_primed:.2f}", f"{wall_sharded:.2f}"
        pairs = sequential_pairs(flags, len(seeds))
        times[n], speedups[n] = cpu, pairs / rate / cpu
        print(f"{n:>9,} {sum(flags):>9,} {cpu:>11.2f} {wall:>9.2f} {primed:>9} {sharded:>19} {pairs:>29,}"
              f" {pairs / rate:>12,.0f} {speedups[n]:>7,.0f}x {peak_rss_gib():>8.2f}", flush=True)
    print("reference s = the exact pair count of the sequential algorithm at that size / the"
          " reference's pairs per second measured on the synthetic sample: an EXTRAPOLATION;"
          " speedup = reference s / ours (streaming, CPU).")
    if 20_000 in speedups:
        verdict = "met" if speedups[20_000] >= GOAL_SPEEDUP_20K else "NOT met"
        print(f"goal >= {GOAL_SPEEDUP_20K}x at 20K: {verdict} ({speedups[20_000]:,.0f}x)")
    if LAMINI_SIZE in times:
        t = times[LAMINI_SIZE]
        print(f"{LAMINI_SIZE:,} measured: {t:,.0f} s CPU = {t / 3600:.2f} h in one process;"
              f" goal <= 1 h: {'met' if t <= GOAL_SECONDS_LAMINI else 'NOT met'}")
    elif len(times) >= 2:
        (n1, t1), (n2, t2) = sorted(times.items())[-2:]
        k = math.log(t2 / t1) / math.log(n2 / n1)
        t = t2 * (LAMINI_SIZE / n2) ** k
        print(f"scaling between {n1:,} and {n2:,}: time ~ N^{k:.2f}; EXTRAPOLATED to {LAMINI_SIZE:,}:"
              f" {t:,.0f} s = {t / 3600:.2f} h in one process;"
              f" goal <= 1 h: {'met' if t <= GOAL_SECONDS_LAMINI else 'NOT met'}")


if __name__ == "__main__":
    main()
