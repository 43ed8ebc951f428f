"""Example-guided and topic-guided instruction generation, one shard at a time."""

from __future__ import annotations

import logging
from collections import Counter

from herd import cost
from herd.errors import ConfigError
from herd.prompts import (
    SOURCE_LABEL,
    format_seed,
    instructions_asked,
    parse_generation,
    render_generation,
)
from herd.rng import derive_seed, rng_for
from herd.sources import Seed
from herd.teacher import Answer, Decoding, Request, Teacher, check_failures

log = logging.getLogger(__name__)

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
    where = f"instructions/{kind} shard {shard}"
    check_failures(answers, cfg["max_failed_fraction"], where)
    records, rejected, unparsable = [], Counter(), []
    for (idx, _, shown), ans in zip(planned, answers):
        if not ans.ok:
            rejected["teacher_error"] += 1
            continue
        parsed = parse_generation(ans.text, ans.finish_reason)
        rejected.update(parsed.rejected)
        if not parsed.instructions:
            unparsable.append(ans)
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
        "unparsable_answers": len(unparsable),
        "cut_answers": sum(a.ok and a.finish_reason == "length" for a in answers),
        "rejected_fragments": dict(sorted(rejected.items())),
        # prompts the teacher failed (within max_failed_fraction): the next invocation retries them
        "failed_requests": [{"id": f"{kind}-{idx:05d}", "error": ans.error}
                            for (idx, _, _), ans in zip(planned, answers) if not ans.ok],
        "teacher": dict(teacher.stats),
        "cost": cost.summarize(ledger),
    }
    log.info("instructions/%s shard %d: %d prompts -> %d instructions, %d unparsable answers, rejected %s, "
             "%.1fs (%d cached)", kind, shard, len(planned), len(records), len(unparsable), dict(rejected),
             teacher.stats["seconds"], teacher.stats["cached"])
    check_unparsable(unparsable, sum(a.ok for a in answers), cfg["max_unparsable_fraction"], where)
    return records, stats, ledger


def check_unparsable(unparsable: list[Answer], answered: int, max_fraction: float, where: str) -> None:
    """Stop a shard whose answers mostly hold no instruction: a teacher that does not follow
    the format would otherwise pass here with nothing and fail later, far from the cause."""
    if not answered or len(unparsable) / answered <= max_fraction:
        return
    text = unparsable[0].text
    sample = text[:300] + ("..." if len(text) > 300 else "")
    cut = sum(a.finish_reason == "length" for a in unparsable)
    raise ValueError(
        f"{where}: {len(unparsable)} of {answered} teacher answers hold no instruction that could be parsed, "
        f"more than instructions.max_unparsable_fraction ({max_fraction:.0%}): the teacher does not follow the "
        "format (each instruction in its own <example></example> tags, or a numbered list)"
        + (f"; {cut} of them were cut at instructions.decoding.max_tokens" if cut else "")
        + ". The answers are cached, so a rerun repeats them: use a teacher that follows the format (teacher.model) "
        f"or raise the fraction. First such answer: {sample!r}")


def generation_parts(config: dict) -> dict[str, dict]:
    """The generation parts a validated config asks for ({kind: prompts and shards}, those with
    prompts); asking for generation without any seed entry to show as examples is an error."""
    ins = config["instructions"]
    parts = {kind: ins[key] for kind, key in (("example", "example_guided"), ("topic", "topic_guided"))
             if ins[key]["prompts"] > 0}
    if parts and not any(s["use"] == "examples" for s in config["seed_tasks"]):
        asked = " and ".join(f"instructions.{k}_guided.prompts = {p['prompts']}" for k, p in parts.items())
        raise ConfigError(
            f"{asked} ask for generated instructions, but no seed_tasks entry has use: examples (the seeds "
            "the teacher is shown); add one, or set instructions.example_guided.prompts and "
            "instructions.topic_guided.prompts to 0 for a run of re-answered seeds only")
    return parts
