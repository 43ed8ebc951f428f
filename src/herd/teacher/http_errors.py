"""What went wrong with an HTTP call to a teacher's server, and whether to try again.

Shared by the OpenAI chat and Batch API clients: one classification of failures
(`Failure`), of the waits a server asks for (Retry-After, rate-limit resets), and of
the backoff between attempts.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx

MAX_WAIT_S = 300.0           # cap on one Retry-After or rate-limit reset wait
ERROR_BODY_CHARS = 300       # how much of a server's error message goes into an error text
REDACTED = "[REDACTED]"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class Failure(Exception):
    """One failed attempt: `kind` names it, `retry` says whether trying again may help,
    `wait_s` is the wait the server asked for (None: back off)."""

    def __init__(self, kind: str, detail: str, retry: bool, wait_s: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.retry, self.wait_s = kind, detail, retry, wait_s


def parse_duration(value: str | None) -> float | None:
    """Seconds in a rate-limit reset header: ``"12"``, ``"1.5s"``, ``"6m0s"``, ``"20ms"``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    unit_s = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * unit_s[u] for n, u in parts)


def retry_after_s(headers: httpx.Headers) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, or ``Retry-After`` in seconds or as a date."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return min(MAX_WAIT_S, max(0.0, float(ms) / 1000))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(MAX_WAIT_S, max(0.0, seconds))


def backoff_s(retry: int, base_s: float, max_s: float) -> float:
    """Full jitter: uniform in [0, min(max_s, base_s * 2**(retry-1))]."""
    return random.uniform(0, min(max_s, base_s * 2 ** (retry - 1)))


def error_message(resp: httpx.Response) -> str:
    """The server's own error message (OpenAI style ``{"error": {"message": ...}}``), or its body."""
    try:
        err = resp.json().get("error")
        message = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        message = None
    return str(message or resp.text or resp.reason_phrase)[:ERROR_BODY_CHARS]


def response_failure(resp: httpx.Response, redact: Callable[[str], str], key_sent: bool) -> Failure:
    """The Failure an unsuccessful response stands for: 408, 429 and 5xx may pass next time."""
    code = resp.status_code
    if code == 401:
        why = "the server rejected the API key that was sent" if key_sent else "no API key was sent"
        return Failure("auth", f"HTTP 401: the API key is missing or wrong ({why}); "
                       "check the environment variable that holds it", retry=False)
    message = redact(error_message(resp))
    if code == 429:
        return Failure("rate_limited", f"HTTP 429: {message}", retry=True, wait_s=retry_after_s(resp.headers))
    if code == 408:
        return Failure("timeout", f"HTTP 408: {message}", retry=True, wait_s=retry_after_s(resp.headers))
    if code >= 500:
        return Failure("server_error", f"HTTP {code}: {message}", retry=True, wait_s=retry_after_s(resp.headers))
    if code == 403:
        return Failure("auth", f"HTTP 403: the API key may not use this model or endpoint: {message}", retry=False)
    return Failure("client_error", f"HTTP {code}: {message}", retry=False)


def transport_failure(exc: BaseException, timeout_s: float, redact: Callable[[str], str]) -> Failure | None:
    """The Failure of a call that got no response (timeout, connection), or None for other errors."""
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return Failure("timeout", f"no answer within {timeout_s:.3g} s", retry=True)
    if isinstance(exc, httpx.RequestError):
        return Failure("connection", redact(f"{type(exc).__name__}: {exc}"), retry=True)
    return None
