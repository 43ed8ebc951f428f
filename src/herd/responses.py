"""The teacher answers every kept instruction, one shard at a time."""

from __future__ import annotations

import logging

from herd import cost
from herd.prompts import render_response
from herd.rng import derive_seed
from herd.teacher import Decoding, Request, Teacher, check_failures

log = logging.getLogger(__name__)


def shard_records(records: list[dict], n_shards: int, shard: int) -> list[dict]:
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} out of range for {n_shards} shards")
    return [r for i, r in enumerate(sorted(records, key=lambda r: r["id"])) if i % n_shards == shard]


def build_requests(records: list[dict], cfg: dict, seed: int) -> list[Request]:
    """The teacher's request for each record, its sampling seed derived from the record's
    `request_id` (seed rows: stable when seed_tasks entries move) or else its id."""
    decoding = Decoding(**cfg["decoding"])
    return [Request(messages=render_response(r["instruction"], cfg["system_prompt"]), decoding=decoding,
                    seed=derive_seed(seed, "responses", r.get("request_id", r["id"])))
            for r in records]


def answer_shard(records: list[dict], cfg: dict, seed: int, teacher: Teacher,
                 usd_per_m: dict | None = None) -> tuple[list[dict], list[dict], dict, list[dict]]:
    """Answer `records`; return (answered rows, failed requests, statistics, cost ledger).

    A request that fails is reported with its error and left out of the rows:
    it is never written as an empty response.
    """
    requests = build_requests(records, cfg, seed)
    answers = teacher.answer(requests, desc="responses")
    ledger = cost.ledger_rows(teacher, requests, answers, "responses", usd_per_m or cost.FREE)
    check_failures(answers, cfg["max_failed_fraction"], "responses")
    rows, failed = [], []
    for rec, ans in zip(records, answers):
        if not ans.ok:
            failed.append({"id": rec["id"], "error": ans.error})
            continue
        rows.append({
            "id": rec["id"],
            "instruction": rec["instruction"],
            "response": ans.text.strip(),
            "instruction_source": rec["instruction_source"],
            "finish_reason": ans.finish_reason,
            "completion_tokens": ans.completion_tokens,
        })
    stats = {"requests": len(records), "answered": len(rows), "failed": len(failed),
             "teacher": dict(teacher.stats), "cost": cost.summarize(ledger)}
    log.info("responses: %d answered, %d failed, %.1fs (%d from cache), %d completion tokens",
             len(rows), len(failed), teacher.stats["seconds"], teacher.stats["cached"],
             teacher.stats["completion_tokens"])
    return rows, failed, stats, ledger
