"""Client-side rate limits for a teacher's server: requests and tokens per minute, and the
pauses the server asks for."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from herd.teacher.http_errors import MAX_WAIT_S, parse_duration
from herd.teacher.request import Request

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4          # rough prompt size for the tokens/minute budget
BURST_S = 1.0                # a bucket may run this many seconds of its rate ahead


def estimate_tokens(req: Request) -> int:
    """What a request costs against a tokens/minute limit: prompt characters / 4 + max_tokens."""
    chars = sum(len(str(m.get("content", ""))) for m in req.messages)
    return chars // CHARS_PER_TOKEN + req.decoding.max_tokens


class TokenBucket:
    """A token bucket in its virtual-clock form: `reserve` books units and says how long to wait.

    Sustained use is held to `per_minute`; up to BURST_S seconds' worth may go at once.
    """

    def __init__(self, per_minute: float):
        if per_minute <= 0:
            raise ValueError(f"rate limit must be positive, got {per_minute}")
        self.seconds_per_unit = 60.0 / per_minute
        self.booked_until = 0.0  # monotonic time by which everything booked so far is paid for

    def reserve(self, units: float, now: float) -> float:
        start = max(now, self.booked_until - BURST_S)
        self.booked_until = max(self.booked_until, now) + units * self.seconds_per_unit
        return start - now


class RateLimiter:
    """Optional requests/minute and tokens/minute buckets plus a pause the server can ask for."""

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None):
        self.requests = TokenBucket(requests_per_minute) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self.paused_until = 0.0

    async def acquire(self, tokens: int) -> None:
        now = time.monotonic()
        wait = 0.0
        if self.requests:
            wait = max(wait, self.requests.reserve(1, now))
        if self.tokens:
            wait = max(wait, self.tokens.reserve(tokens, now))
        if wait > 0:
            await asyncio.sleep(wait)
        while (left := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + min(seconds, MAX_WAIT_S))

    def observe(self, headers: httpx.Headers, tokens: int) -> None:
        """Hold new sends until the reset when a response says the budget left is too small."""
        for unit, need in (("requests", 1), ("tokens", tokens)):
            remaining = headers.get(f"x-ratelimit-remaining-{unit}")
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{unit}"))
            try:
                spent = remaining is not None and float(remaining) < need
            except ValueError:
                continue
            if spent and reset:
                log.info("server says the %s budget is spent; pausing %.2f s", unit, reset)
                self.pause(reset)
