"""Teacher requests that failed within the tolerated share are retried by the next invocation.

A shard whose job succeeded with some failed requests is complete as far as Snakemake
knows; `retry_token` gives its rule a params value that changes while failures are left,
and params changes rerun a job. The answers that succeeded come from the cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def retry_token(stats_path: str | Path) -> str:
    """A params value for a teacher shard's job that changes while its last run left failed requests.

    Snakemake reruns a job whose params changed, so failed requests (tolerated up to
    `max_failed_fraction`, never cached) are retried by every new invocation; the
    answers that succeeded come from the cache. The job records the token it ran with
    (`rerun_token` in its stats): with no failures left the token stays that one, and nothing
    reruns. No stats file yet: "".
    """
    path = Path(stats_path)
    if not path.is_file():
        return ""
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # unreadable: a token no finished run recorded, so the shard reruns
        return "unreadable"
    token = stats.get("rerun_token", "")
    failed = sorted(f["id"] for f in stats.get("failed_requests", []))
    if not failed:
        return token
    blob = json.dumps([failed, token], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


_TOKENS: dict[str, str] = {}


def state_file(stats_path: str | Path) -> Path:
    """Where a shard keeps its failed requests and the token it ran with: beside its stats, but
    no declared output, so Snakemake never deletes it before a job runs (a job on a cluster
    node evaluates its params after that, and must see what the submitting process saw)."""
    path = Path(stats_path)
    return path.with_name(path.name.removesuffix(".stats.json") + ".retry.json")


def retry_param(stats_path: str) -> str:
    """The params value of the shard whose stats are `stats_path` (read once per process)."""
    if stats_path not in _TOKENS:
        _TOKENS[stats_path] = retry_token(state_file(stats_path))
    return _TOKENS[stats_path]


def record(stats_path: str | Path, failed: list[dict], token: str) -> None:
    """After a shard's run: its failed requests, and the token it ran with (its params value)."""
    from herd.io import write_json

    write_json(state_file(stats_path), {"failed_requests": [{"id": f["id"]} for f in failed], "rerun_token": token})
