"""What the teacher costs: a ledger per request, and a plan before a paid run.

The ledger has one row per request of a shard: its cache key, the stage, the
model, prompt and completion tokens, whether it came from the cache, and the
dollars it cost in this run (a cached answer costs nothing again). The plan
estimates requests, tokens and dollars from the configuration alone, before
anything is sent, and refuses a run whose estimate exceeds the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from herd.teacher import Answer, Request, Teacher, request_key

CHARS_PER_TOKEN = 4  # rough English average, used only for estimates
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators of one chat message
WORDS_TO_TOKENS = 1.35
EXPECTED_INSTRUCTION_TOKENS = 24  # one generated instruction with its tags
EXPECTED_RESPONSE_FILL = 0.6  # expected share of max_tokens a response uses
FREE = {"prompt": 0.0, "completion": 0.0}


def price(cfg: dict) -> dict:
    """USD per million prompt / completion tokens of the configured teacher (0 when local)."""
    if cfg["backend"] != "openai":
        return dict(FREE)
    table = cfg["prices"].get(cfg["model"])
    if table is None:
        return {"prompt": math.nan, "completion": math.nan}
    discount = cfg["batch_discount"] if cfg["batch"] else 1.0
    return {"prompt": table["prompt"] * discount, "completion": table["completion"] * discount}


def dollars(prompt_tokens: float, completion_tokens: float, usd_per_m: dict) -> float:
    return (prompt_tokens * usd_per_m["prompt"] + completion_tokens * usd_per_m["completion"]) / 1e6


def ledger_rows(teacher: Teacher, requests: Sequence[Request], answers: Sequence[Answer],
                stage: str, usd_per_m: dict) -> list[dict]:
    rows = []
    for req, ans in zip(requests, answers):
        paid = not ans.cached and ans.ok
        rows.append({
            "key": request_key(teacher.backend, teacher.model_id, req),
            "stage": stage,
            "model": teacher.model_id,
            "prompt_tokens": ans.prompt_tokens,
            "completion_tokens": ans.completion_tokens,
            "cached": ans.cached,
            "ok": ans.ok,
            "usd": round(dollars(ans.prompt_tokens, ans.completion_tokens, usd_per_m), 8) if paid else 0.0,
        })
    return rows


def summarize(rows: Sequence[dict]) -> dict:
    return {
        "requests": len(rows),
        "cached": sum(r["cached"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "usd": round(sum(r["usd"] for r in rows), 6),
    }


def estimate_tokens(messages: list[dict]) -> int:
    return sum(len(m["content"]) // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS for m in messages)


def plan(cfg: dict, sample_generation: list[dict], sample_instruction_words: float,
         keep_fraction: float) -> dict:
    """Estimate the teacher's work for a run of `cfg`.

    `sample_generation` is a rendered generation prompt (its size stands for all
    of them); `sample_instruction_words` the mean length of an instruction;
    `keep_fraction` the share of generated instructions expected to survive the
    filters, which sets the number of responses.
    """
    ins, resp, teacher = cfg["instructions"], cfg["responses"], cfg["teacher"]
    gen_requests = ins["example_guided"]["prompts"] + ins["topic_guided"]["prompts"]
    gen_prompt = estimate_tokens(sample_generation)
    gen_completion = min(ins["decoding"]["max_tokens"], ins["per_prompt"] * EXPECTED_INSTRUCTION_TOKENS)
    generated = gen_requests * ins["per_prompt"]
    resp_requests = math.ceil(generated * keep_fraction)
    resp_prompt = (len(resp["system_prompt"]) // CHARS_PER_TOKEN + 2 * MESSAGE_OVERHEAD_TOKENS
                   + math.ceil(sample_instruction_words * WORDS_TO_TOKENS))
    resp_completion = resp["decoding"]["max_tokens"] * EXPECTED_RESPONSE_FILL
    usd_per_m = price(teacher)
    stages = {
        "instructions": {"requests": gen_requests, "prompt_tokens": gen_requests * gen_prompt,
                         "completion_tokens": gen_requests * gen_completion,
                         "completion_tokens_max": gen_requests * ins["decoding"]["max_tokens"]},
        "responses": {"requests": resp_requests, "prompt_tokens": resp_requests * resp_prompt,
                      "completion_tokens": round(resp_requests * resp_completion),
                      "completion_tokens_max": resp_requests * resp["decoding"]["max_tokens"]},
    }
    for s in stages.values():
        s["usd"] = round(dollars(s["prompt_tokens"], s["completion_tokens"], usd_per_m), 4)
        s["usd_max"] = round(dollars(s["prompt_tokens"], s["completion_tokens_max"], usd_per_m), 4)
    total = {k: sum(s[k] for s in stages.values())
             for k in ("requests", "prompt_tokens", "completion_tokens", "completion_tokens_max", "usd", "usd_max")}
    return {
        "teacher": {"backend": teacher["backend"], "model": teacher["model"], "batch": teacher["batch"]},
        "usd_per_million_tokens": usd_per_m,
        "keep_fraction": keep_fraction,
        "stages": stages,
        "total": total,
        "max_budget_usd": teacher["max_budget_usd"],
    }


def plan_from_config(config: dict) -> dict:
    """The plan of a validated configuration, reading its seed files for prompt sizes."""
    from herd import sources
    from herd.prompts import format_seed, render_generation
    from herd.rng import rng_for

    seeds = sources.load_seed_tasks(config["seed_tasks"])
    ins = config["instructions"]
    shown = rng_for(config["seed"], "plan").sample(seeds, min(ins["examples_per_prompt"], len(seeds)))
    sample = render_generation([format_seed(s.instruction, s.input) for s in shown], ins["per_prompt"],
                               ["Topic one", "Topic two", "Topic three"][: ins["topics_per_prompt"]])
    mean_words = sum(len(s.instruction.split()) for s in seeds) / len(seeds)
    return plan(config, sample, mean_words, config["plan"]["keep_fraction"])


def check_budget(estimate: dict) -> None:
    budget = estimate["max_budget_usd"]
    usd = estimate["total"]["usd"]
    if math.isnan(usd):
        raise ValueError(
            f"teacher.prices has no entry for model {estimate['teacher']['model']!r}: "
            "add its USD per million prompt/completion tokens before a paid run")
    if budget is not None and usd > budget:
        raise ValueError(
            f"estimated teacher cost ${usd:,.2f} exceeds teacher.max_budget_usd ${budget:,.2f}; "
            "raise the budget or shrink the run (plan above; `snakemake results/plan/plan.txt` writes it)")


def _usd(x: float) -> str:
    return f"{x:,.2f}" if x >= 1 else f"{x:.4f}"


def format_plan(estimate: dict) -> str:
    t = estimate["teacher"]
    lines = [
        f"teacher: {t['backend']} {t['model']}{' (batch API)' if t['batch'] else ''}",
        f"prices (USD per 1M tokens): prompt {estimate['usd_per_million_tokens']['prompt']}, "
        f"completion {estimate['usd_per_million_tokens']['completion']}",
        f"{'stage':<14}{'requests':>12}{'prompt tok':>16}{'completion tok':>16}{'USD':>12}{'USD at most':>14}",
    ]
    for name, s in [*estimate["stages"].items(), ("total", estimate["total"])]:
        lines.append(f"{name:<14}{s['requests']:>12,}{s['prompt_tokens']:>16,}{s['completion_tokens']:>16,}"
                     f"{_usd(s['usd']):>12}{_usd(s['usd_max']):>14}")
    budget = estimate["max_budget_usd"]
    lines.append(f"budget: {'none set' if budget is None else f'${budget:,.2f}'}; responses assume "
                 f"{estimate['keep_fraction']:.0%} of generated instructions pass the filters")
    return "\n".join(lines) + "\n"
