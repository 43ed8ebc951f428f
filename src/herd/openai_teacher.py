"""The `openai` teacher: any OpenAI-compatible chat-completions endpoint.

One client for OpenAI, vLLM, Ollama and llama.cpp's server. `base_url` is the
API root including its version, e.g. ``https://api.openai.com/v1`` or
``http://127.0.0.1:8080/v1``; requests go to ``{base_url}/chat/completions``.

- Cache first: every request is looked up in the ResponseCache; only the
  missing ones are sent, at most `max_in_flight` at once (asyncio + httpx),
  and each answer is stored the moment it arrives, so a killed job loses
  nothing that was answered. Results keep the order of the requests.
- Rate limits: optional token buckets for requests/minute and tokens/minute
  (a request costs prompt characters / 4 + max_tokens). Response headers
  ``x-ratelimit-remaining-{requests,tokens}`` with
  ``x-ratelimit-reset-{requests,tokens}`` (``"1s"``, ``"6m0s"``, ``"20ms"`` or
  plain seconds) hold every new send until the reset when the budget left is
  smaller than what the request just sent cost. ``Retry-After`` (seconds or an
  HTTP date) and ``retry-after-ms`` on a 429 hold every new send for that long.
- Failures: 408, 429, 5xx, timeouts, connection errors and malformed or
  truncated JSON bodies are retried with exponential backoff and full jitter
  (or after Retry-After when the server sends it), at most `max_retries`
  times, each retry logged at WARNING with its cause and wait; then the
  request's Answer has ``text=None`` and ``error="<kind>: <detail>"``. Other
  4xx fail at once (401: the API key is missing or wrong).
- Deadline: `request_deadline_s` (teacher.request_deadline_s) bounds one
  request over all its attempts and backoff waits, counted from its first
  send (not from its wait for a free slot). `timeout_s` bounds one attempt
  and stays long, since long generations are legitimate; the deadline is what
  keeps a server that accepts connections and never answers from holding a
  job for `timeout_s` x attempts. A request that hits it fails with kind
  ``deadline``.
- Several jobs sharing the cache never send the same request at once (the
  cache leases of herd.teacher): a request another job is sending is waited
  for, and taken over if that job dies.
- Secrets: the API key is sent only in the Authorization header; it is
  removed from every error text, log line and ledger event, and is never
  part of the cache key or the cached answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from email.utils import parsedate_to_datetime
from collections.abc import Callable

import httpx
from tqdm import tqdm

from herd.teacher import LEASE_S, Answer, Request, ResponseCache, Teacher

log = logging.getLogger(__name__)

CHAT_PATH = "/chat/completions"
CHARS_PER_TOKEN = 4          # rough prompt size for the tokens/minute budget
BURST_S = 1.0                # a bucket may run this many seconds of its rate ahead
MAX_WAIT_S = 300.0           # cap on one Retry-After or rate-limit reset wait
DEFAULT_DEADLINE_S = 900.0   # teacher.request_deadline_s: 3 attempts that run the full default timeout_s
ERROR_BODY_CHARS = 300       # how much of a server's error message goes into Answer.error
REDACTED = "[REDACTED]"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class _Failure(Exception):
    """One failed attempt: `kind` names it, `retry` says whether trying again may help."""

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


class OpenAITeacher(Teacher):
    """A teacher behind an OpenAI-compatible ``/chat/completions`` endpoint (see the module doc)."""

    backend = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None, cache: ResponseCache, *,
                 max_in_flight: int = 8, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, timeout_s: float = 300.0,
                 max_retries: int = 6, backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 request_deadline_s: float = DEFAULT_DEADLINE_S, lease_s: float = LEASE_S,
                 ledger: Callable[[dict], None] | None = None, model_id: str | None = None):
        """`api_key` comes from the caller's environment (None for local servers).

        `model` is sent to the server; `model_id` (default: `model`) is the cache identity.
        `timeout_s` bounds one attempt; `max_retries` counts attempts after the first;
        `request_deadline_s` bounds all attempts of one request and the waits between them.
        `lease_s`: how long this teacher's cache leases outlive it if it is killed.
        `ledger`, when given, is called with one dict per HTTP attempt (request key,
        attempt, outcome, seconds, tokens): no prompt, no key.
        """
        if max_in_flight < 1 or max_retries < 0 or request_deadline_s <= 0:
            raise ValueError("max_in_flight must be >= 1, max_retries >= 0 and request_deadline_s > 0")
        super().__init__(model_id or model, cache, lease_s=lease_s)
        self.url = base_url.rstrip("/") + CHAT_PATH
        self.model = model
        self._api_key = api_key or None
        self.max_in_flight = max_in_flight
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.request_deadline_s = request_deadline_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.ledger = ledger
        self.stats["retries"] = 0

    def __repr__(self) -> str:
        return f"OpenAITeacher(url={self.url!r}, model={self.model!r})"

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, REDACTED) if self._api_key else text

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        """Answer `requests` in order (synchronous; use `answer_async` inside an event loop)."""
        return asyncio.run(self.answer_async(requests, desc))

    async def answer_async(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        """Cached answers first, then the rest concurrently; results in the order of `requests`.
        Requests another job is sending (it holds their cache lease) are waited for."""
        start = time.perf_counter()
        keys, answers = self._lookup(requests)
        todo = [i for i, a in enumerate(answers) if a is None]
        bar = tqdm(total=len(requests), initial=len(requests) - len(todo), desc=desc,
                   mininterval=5, unit="req")

        async def one(i: int, client: httpx.AsyncClient, slots: asyncio.Semaphore) -> None:
            ans = await self._answer_one(client, slots, requests[i], keys[i])
            self._store(keys[i], ans)  # at once: a killed job keeps every answer it got
            answers[i] = ans
            bar.update()

        try:
            if todo:
                slots = asyncio.Semaphore(self.max_in_flight)
                with self._leasing():
                    now, others = self._claim(keys, answers, todo)
                    async with self._client() as client:
                        while now or others.wait:
                            if now:
                                await asyncio.gather(*(one(i, client, slots) for i in now))
                            now = []
                            while others.wait and not now:
                                bar.update(sum(a is not None for a in answers) - bar.n)
                                await asyncio.sleep(others.interval)
                                now = others.poll()
                bar.update(len(requests) - bar.n)
        finally:
            bar.close()
        self._count(answers, time.perf_counter() - start)
        return answers

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.max_in_flight,
                              max_keepalive_connections=self.max_in_flight)
        return httpx.AsyncClient(headers=headers, timeout=self.timeout_s, limits=limits)

    def _body(self, req: Request) -> dict:
        d = req.decoding
        return {"model": self.model, "messages": req.messages, "temperature": d.temperature,
                "top_p": d.top_p, "max_tokens": d.max_tokens, "seed": req.seed}

    def _backoff_s(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(retry-1))]."""
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1)))

    async def _answer_one(self, client: httpx.AsyncClient, slots: asyncio.Semaphore,
                          req: Request, key: str) -> Answer:
        """Send one request, retrying what may pass next time within the deadline; never raises
        for a failed request."""
        body, cost = self._body(req), estimate_tokens(req)
        failure: _Failure | None = None
        deadline: float | None = None
        out_of_time = False
        wait, sent = 0.0, 0
        for attempt in range(self.max_retries + 1):
            if failure is not None:
                self.stats["retries"] += 1
                await asyncio.sleep(wait)
            async with slots:  # not held while backing off, so others go meanwhile
                if deadline is None:  # from the first send: queueing for a slot is not this request's time
                    deadline = time.monotonic() + self.request_deadline_s
                await self.limiter.acquire(cost)
                t0 = time.perf_counter()
                if (left := deadline - time.monotonic()) <= 0:
                    out_of_time = True
                    break
                sent += 1
                try:
                    ans = await self._post(client, body, cost, min(self.timeout_s, left))
                except _Failure as exc:
                    failure = exc
                except Exception as exc:  # unforeseen: fail this request, not the batch
                    failure = _Failure("error", self._redact(f"{type(exc).__name__}: {exc}"), retry=False)
                else:
                    self._record(key, attempt, t0, "ok", ans=ans)
                    return ans
            self._record(key, attempt, t0, failure.kind)
            if not failure.retry:
                break
            if failure.kind == "rate_limited" and failure.wait_s:
                self.limiter.pause(failure.wait_s)  # the whole account is over its limit
            wait = failure.wait_s if failure.wait_s is not None else self._backoff_s(attempt + 1)
            left = deadline - time.monotonic()
            if left <= 0 or attempt < self.max_retries and wait >= left:
                out_of_time = True  # no attempt could finish in time: fail now, not after the wait
                break
            if attempt == self.max_retries:
                break
            log.warning("teacher request %s: attempt %d of %d failed (%s); retrying in %.2f s "
                        "(%.1f s left of teacher.request_deadline_s=%g)", key[:12], attempt + 1,
                        self.max_retries + 1, failure, wait, left, self.request_deadline_s)
        if out_of_time:
            kind = "deadline"
            detail = (f"no answer within teacher.request_deadline_s={self.request_deadline_s:g} s "
                      f"({sent} attempts{f'; the last failed with {failure}' if failure else ''})")
        else:
            kind, detail = failure.kind, failure.detail
            if failure.retry:
                detail += f" (gave up after {self.max_retries + 1} attempts)"
        log.warning("teacher request %s failed: %s: %s", key[:12], kind, detail)
        return Answer(text=None, error=f"{kind}: {detail}")

    async def _post(self, client: httpx.AsyncClient, body: dict, cost: int, timeout_s: float) -> Answer:
        """One HTTP attempt; raises _Failure for anything that is not a usable answer."""
        try:
            resp = await asyncio.wait_for(client.post(self.url, json=body), timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _Failure("timeout", f"no answer within {timeout_s:.3g} s", retry=True) from None
        except httpx.RequestError as exc:
            raise _Failure("connection", self._redact(f"{type(exc).__name__}: {exc}"), retry=True) from None
        self.limiter.observe(resp.headers, cost)
        if resp.status_code != 200:
            raise self._http_failure(resp)
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"]["content"]
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _Failure("bad_response", self._redact(
                f"malformed or truncated JSON body ({type(exc).__name__}: {exc})"), retry=True) from None
        finish = choice.get("finish_reason")
        if not isinstance(text, str):
            raise _Failure("no_content", f"the answer holds no text (finish_reason={finish})", retry=False)
        return Answer(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, extra={"model": data.get("model")})

    def _http_failure(self, resp: httpx.Response) -> _Failure:
        code = resp.status_code
        if code == 401:
            why = ("no API key was sent" if self._api_key is None
                   else "the server rejected the API key that was sent")
            return _Failure("auth", f"HTTP 401: the API key is missing or wrong ({why}); "
                            "check the environment variable that holds it", retry=False)
        message = self._redact(_error_message(resp))
        if code == 429:
            return _Failure("rate_limited", f"HTTP 429: {message}", retry=True, wait_s=retry_after_s(resp.headers))
        if code == 408:
            return _Failure("timeout", f"HTTP 408: {message}", retry=True, wait_s=retry_after_s(resp.headers))
        if code >= 500:
            return _Failure("server_error", f"HTTP {code}: {message}", retry=True,
                            wait_s=retry_after_s(resp.headers))
        if code == 403:
            return _Failure("auth", f"HTTP 403: the API key may not use this model or endpoint: {message}",
                            retry=False)
        return _Failure("client_error", f"HTTP {code}: {message}", retry=False)

    def _record(self, key: str, attempt: int, t0: float, outcome: str, ans: Answer | None = None) -> None:
        if self.ledger is None:
            return
        self.ledger({"request_key": key, "attempt": attempt, "outcome": outcome,
                     "seconds": round(time.perf_counter() - t0, 4),
                     "prompt_tokens": ans.prompt_tokens if ans else 0,
                     "completion_tokens": ans.completion_tokens if ans else 0})


def _error_message(resp: httpx.Response) -> str:
    """The server's own error message (OpenAI style ``{"error": {"message": ...}}``), or its body."""
    try:
        err = resp.json().get("error")
        message = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        message = None
    return str(message or resp.text or resp.reason_phrase)[:ERROR_BODY_CHARS]
