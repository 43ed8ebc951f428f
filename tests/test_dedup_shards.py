"""The sharded ROUGE-L dedup (neighbours in many processes, then verdicts in order) keeps
exactly what the sequential filter keeps."""
import json
import random

import pytest
from conftest import SHARED

from herd import io
from herd.dedup import (
    RougeNovelty,
    ShardedRougeNovelty,
    novelty_keep,
    novelty_keep_sharded,
    resolve_kept,
    rouge_l_f1,
    rouge_neighbours,
    rouge_tokens,
)
from herd.filters import apply_filters, build_steps

CFG = {"min_words": 4, "max_words": 150, "rouge_threshold": 0.7,
       "blacklist": ["image", "images", "go to", "map", "draw"]}
T = 0.7


def f1(a: str, b: str) -> float:
    return rouge_l_f1(rouge_tokens(a), rouge_tokens(b))


def edit(text: str, rng: random.Random) -> str:
    """A light edit (a word dropped, two swapped, or one replaced): usually F1 > 0.7."""
    w = text.split()
    i, kind = rng.randrange(len(w)), rng.randrange(3)
    if kind == 0 and len(w) > 4:
        del w[i]
    elif kind == 1 and len(w) > 1:
        j = i + 1 if i + 1 < len(w) else i - 1
        w[i], w[j] = w[j], w[i]
    else:
        w[i] = rng.choice(["new", "short", "simple", "detailed", "following"])
    return " ".join(w)


@pytest.fixture(scope="module")
def real():
    """(candidates, seeds, spare): 1,500 Alpaca instructions with near duplicates of earlier
    ones (and of those: chains) and light edits of seeds; the 175 Self-Instruct seeds as
    references; 100 more Alpaca instructions."""
    alpaca, seed_file = SHARED / "seed/alpaca_5000.json", SHARED / "seed/selfinstruct_seed_tasks.jsonl"
    if not (alpaca.exists() and seed_file.exists()):
        pytest.skip(f"{SHARED} has no Alpaca / Self-Instruct seed files")
    seeds = [json.loads(line)["instruction"] for line in seed_file.read_text().splitlines()]
    rng = random.Random(0)
    instructions = [r["instruction"] for r in json.loads(alpaca.read_text())]
    candidates: list[str] = []
    for text in instructions[:1500]:
        candidates.append(text)
        roll = rng.random()
        if roll < 0.3:
            candidates.append(edit(rng.choice(candidates), rng))
        elif roll < 0.35:
            candidates.append(edit(rng.choice(seeds), rng))
    return candidates, seeds, instructions[1500:1600]


def test_neighbours_are_every_earlier_match(real):
    """Phase 1 against all pairs scored one by one, for the first 400 candidates."""
    candidates, seeds, _ = real
    head = candidates[:400]
    expected = {}
    for i, text in enumerate(head):
        if any(f1(text, s) > T for s in seeds):
            expected[i] = None
        elif near := [j for j in range(i) if f1(text, head[j]) > T]:
            expected[i] = near
    assert sum(v is None for v in expected.values()) >= 5 and sum(v is not None for v in expected.values()) >= 40
    assert rouge_neighbours(head, seeds, T) == expected


@pytest.mark.parametrize("workers,shards", [(1, None), (2, None), (3, None), (1, 4), (2, 5), (3, 7)])
def test_sharded_keeps_what_the_sequential_filter_keeps(real, workers, shards):
    candidates, seeds, _ = real
    expected = novelty_keep(candidates, seeds, T)
    assert novelty_keep_sharded(candidates, seeds, T, workers, shards) == expected


def test_real_data_has_the_hard_cases(real):
    """Some candidates are dropped, some by a seed, and some are kept although an earlier
    candidate is within the threshold (it was dropped): a naive rule would drop them."""
    candidates, seeds, _ = real
    neighbours = rouge_neighbours(candidates, seeds, T)
    kept = resolve_kept(len(candidates), neighbours)
    assert kept == novelty_keep(candidates, seeds, T)
    assert sum(near is None for near in neighbours.values()) >= 20
    assert 200 < kept.count(False) < 600
    assert sum(kept[i] for i, near in neighbours.items() if near) >= 3
    # the shards together give the same neighbours
    parts = [rouge_neighbours(candidates, seeds, T, k, 3) for k in range(3)]
    assert {i: near for part in parts for i, near in part.items()} == neighbours


SEED = "Give three tips for staying healthy and happy every day."
CHAIN = [
    "Describe the main causes of the French revolution in detail.",   # a: kept
    "Describe the main effects of the French revolution in brief.",   # b ~ a: dropped
    "Explain the main effects of the Russian revolution in brief.",   # c ~ b only: KEPT
    "Explain the main effects of the Russian revolution in summary.",  # d ~ c: dropped
]


def test_chain_keeps_a_candidate_whose_only_neighbour_was_dropped():
    a, b, c, d = CHAIN
    assert f1(a, b) > T and f1(b, c) > T and f1(c, d) > T and f1(a, c) <= T and f1(a, d) <= T
    assert f1(b, d) == T  # a tie: not above the threshold, so no neighbour
    neighbours = rouge_neighbours(CHAIN, [SEED], T)
    assert neighbours == {1: [0], 2: [1], 3: [2]}
    assert resolve_kept(4, neighbours) == novelty_keep(CHAIN, [SEED], T) == [True, False, True, False]
    assert novelty_keep_sharded(CHAIN, [SEED], T, workers=2) == [True, False, True, False]
    with_empty = [a, "?!", b, "", c, d]  # texts without tokens (seeds too) are never neighbours
    assert rouge_neighbours(with_empty, ["", SEED], T) == {2: [0], 4: [2], 5: [4]}
    assert novelty_keep_sharded(with_empty, ["", SEED], T, 2, 4) == novelty_keep(with_empty, ["", SEED], T)


def test_a_candidate_near_only_a_seed_copy_is_kept():
    near_seed = "Give three tips for staying healthy and calm each day."  # ~ SEED: dropped
    other = "Give three ideas for staying fit and calm each day."  # ~ near_seed, not SEED: kept
    assert f1(near_seed, SEED) > T and f1(other, near_seed) > T and f1(other, SEED) <= T
    candidates = [near_seed, other]
    neighbours = rouge_neighbours(candidates, [SEED], T)
    assert neighbours == {0: None, 1: [0]}
    assert resolve_kept(2, neighbours) == novelty_keep(candidates, [SEED], T) == [False, True]


def test_rouge_novelty_matches_lists_every_reference():
    nov = RougeNovelty([SEED, "", CHAIN[0]], T)  # the empty reference is numbered, never matched
    assert nov.matches(CHAIN[1]) == [2]
    nov.add(CHAIN[1])
    nov.add(CHAIN[2])
    assert nov.matches(CHAIN[3]) == [4]  # CHAIN[2]; CHAIN[1] (index 3) is at F1 0.7 exactly
    assert nov.matches("") == []


class DropMarked:
    """A later learning step (as the embedding step): drops texts with a marker word."""

    def check(self, text: str) -> str | None:
        return "marked" if "zebra" in text.split() else None

    def add(self, text: str) -> None:
        pass


def test_filter_stage_with_rouge_workers_gives_the_same_output(real, tmp_path):
    candidates, seeds, spare = real
    rng = random.Random(1)
    texts = candidates[:900] + ["Hi.", "Draw a map of the city.", candidates[3], "  " + candidates[5].upper()]
    # new texts that a later step drops are no references: their near duplicates after them stay
    later = [edit(t, rng) for t in spare[:30]]
    texts += [x for t, near in zip(spare, later) for x in (f"{t} zebra", near)]
    records = [{"id": f"{i:05d}", "instruction": t} for i, t in enumerate(texts)]
    outputs = {}
    for workers in (1, 2):
        steps = build_steps({**CFG, "rouge_workers": workers}, seeds) + [DropMarked()]
        assert type(steps[5]) is (RougeNovelty if workers == 1 else ShardedRougeNovelty)
        kept, excluded, stats = apply_filters(records, steps)
        io.write_jsonl(tmp_path / f"kept{workers}.jsonl", kept)
        io.write_jsonl(tmp_path / f"excluded{workers}.jsonl", excluded)
        outputs[workers] = (kept, excluded, stats)
    assert outputs[2] == outputs[1]
    for name in ("kept", "excluded"):
        assert (tmp_path / f"{name}2.jsonl").read_bytes() == (tmp_path / f"{name}1.jsonl").read_bytes()
    reasons = outputs[1][2]["dropped_by_reason"]
    assert reasons["rouge_similar"] > 100 and reasons["marked"] >= 25
    assert sum(r["instruction"] in later for r in outputs[1][0]) >= 25
    assert {"too_short", "blacklist:draw", "exact_duplicate"} <= set(reasons)


def test_sharded_step_needs_prepared_texts_in_order():
    step = ShardedRougeNovelty([SEED], T, workers=2)
    step.prepare(CHAIN)
    assert step.check(CHAIN[0]) is None
    step.add(CHAIN[0])
    assert step.check(CHAIN[2]) is None  # CHAIN[1] skipped (an earlier step dropped it)
    with pytest.raises(ValueError, match="not among the prepared texts"):
        step.check(CHAIN[1])
