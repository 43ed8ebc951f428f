"""Example-guided and topic-guided instruction generation, one shard at a time."""

from __future__ import annotations

import logging
from collections import Counter

from herd import cost
from herd.prompts import format_seed, instructions_asked, parse_generation, render_generation
from herd.rng import derive_seed, rng_for
from herd.sources import Seed
from herd.teacher import Decoding, Request, Teacher, check_failures

log = logging.getLogger(__name__)

# LaMini's labels for the two generated sources
SOURCE_LABEL = {
    "example": "self_instruct_without_topic",
    "topic": "self_instruct_with_topic",
}


def shard_prompts(n_prompts: int, n_shards: int, shard: int) -> list[int]:
    """Global prompt indices that belong to `shard` (round robin)."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} out of range for {n_shards} shards")
    return list(range(shard, n_prompts, n_shards))


def build_requests(kind: str, seeds: list[Seed], topics: list[str], cfg: dict,
                   seed: int, shard: int) -> list[tuple[int, Request, dict]]:
    """The requests of one shard: (prompt index, request, what the prompt showed)."""
    if kind not in SOURCE_LABEL:
        raise ValueError(f"unknown instruction kind {kind!r}")
    part = cfg["example_guided" if kind == "example" else "topic_guided"]
    decoding = Decoding(**cfg["decoding"])
    k = min(cfg["examples_per_prompt"], len(seeds))
    out = []
    for idx in shard_prompts(part["prompts"], part["shards"], shard):
        rng = rng_for(seed, "instructions", kind, idx)
        shown = rng.sample(seeds, k)
        examples = [format_seed(s.instruction, s.input) for s in shown]
        chosen_topics = None
        if kind == "topic":
            if not topics:
                raise ValueError("topic-guided generation needs at least one topic")
            chosen_topics = rng.sample(topics, min(cfg["topics_per_prompt"], len(topics)))
        asked = instructions_asked(examples, cfg["per_prompt"], cfg["per_prompt_long"], cfg["long_example_words"])
        messages = render_generation(examples, asked, chosen_topics)
        req = Request(messages=messages, decoding=decoding,
                      seed=derive_seed(seed, "instructions-decode", kind, idx))
        out.append((idx, req, {"examples": examples, "topics": chosen_topics or [], "asked": asked}))
    return out


def generate_shard(kind: str, seeds: list[Seed], topics: list[str], cfg: dict,
                   seed: int, shard: int, teacher: Teacher,
                   usd_per_m: dict | None = None) -> tuple[list[dict], dict, list[dict]]:
    """Generate one shard; return (records sorted by id, statistics, cost ledger)."""
    planned = build_requests(kind, seeds, topics, cfg, seed, shard)
    requests = [r for _, r, _ in planned]
    answers = teacher.answer(requests, desc=f"instructions/{kind}/{shard}")
    ledger = cost.ledger_rows(teacher, requests, answers, "instructions", usd_per_m or cost.FREE)
    check_failures(answers, cfg["max_failed_fraction"], f"instructions/{kind} shard {shard}")
    records, rejected = [], Counter()
    for (idx, _, shown), ans in zip(planned, answers):
        if not ans.ok:
            rejected["teacher_error"] += 1
            continue
        parsed = parse_generation(ans.text)
        rejected.update(parsed.rejected)
        for pos, inst in enumerate(parsed.instructions):
            records.append({
                "id": f"{kind}-{idx:05d}-{pos:02d}",
                "instruction": inst,
                "instruction_source": SOURCE_LABEL[kind],
                "topics": shown["topics"],
            })
    records.sort(key=lambda r: r["id"])
    stats = {
        "kind": kind,
        "shard": shard,
        "prompts": len(planned),
        "asked": sum(shown["asked"] for _, _, shown in planned),
        "instructions": len(records),
        "rejected_fragments": dict(sorted(rejected.items())),
        "teacher": dict(teacher.stats),
        "cost": cost.summarize(ledger),
    }
    log.info("instructions/%s shard %d: %d prompts -> %d instructions, rejected %s, %.1fs (%d cached)",
             kind, shard, len(planned), len(records), dict(rejected),
             teacher.stats["seconds"], teacher.stats["cached"])
    return records, stats, ledger
