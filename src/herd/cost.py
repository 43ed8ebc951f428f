"""What the teacher costs: prices, and a ledger with one row per request.

A ledger row holds the request's cache key, the stage, the model, prompt and
completion tokens, whether it came from the cache, and the dollars it cost in this
run (a cached answer costs nothing again). The plan before a run is herd.plan.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from urllib.parse import urlparse

from herd.teacher import Answer, Request, Teacher, request_key

FREE = {"prompt": 0.0, "completion": 0.0}


def is_local_url(url: str) -> bool:
    """Whether an API root is on this machine: localhost, 127.0.0.0/8, ::1 or 0.0.0.0."""
    try:
        host = urlparse(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def price(cfg: dict) -> dict:
    """USD per million prompt / completion tokens of the configured teacher: 0 for in-process
    teachers; for a server, its model's entry in `prices`, else 0 on this machine (vLLM,
    Ollama, llama.cpp) and NaN (unknown: no paid run) elsewhere. A priced model behind a local
    proxy keeps its price."""
    if cfg["backend"] != "openai":
        return dict(FREE)
    table = cfg["prices"].get(cfg["model"])
    if table is None:
        return dict(FREE) if is_local_url(cfg["base_url"]) else {"prompt": math.nan, "completion": math.nan}
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


def usd_text(x: float, decimals: int = 2) -> str:
    """Dollars with at least `decimals` decimals and, below one dollar, two significant digits:
    0.0012 is $0.0012, not $0.00."""
    if 0 < abs(x) < 1:
        decimals = max(decimals, 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def usd_pair(a: float, b: float) -> tuple[str, str]:
    """`a` and `b` as dollars with enough decimals that two different amounts read differently."""
    for decimals in range(2, 13):
        shown = usd_text(a, decimals), usd_text(b, decimals)
        if a == b or shown[0] != shown[1]:
            return shown
    return shown


def usd_short(x: float) -> str:
    """Dollars for a table cell: cents from one dollar up, four decimals below."""
    return usd_text(x) if x >= 1 or x == 0 or math.isnan(x) else usd_text(x, 4)
