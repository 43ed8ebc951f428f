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
  cache leases of herd.teacher.cache): a request another job is sending is waited
  for, and taken over if that job dies.
- Secrets: the API key is sent only in the Authorization header; it is
  removed from every error text, log line and ledger event, and is never
  part of the cache key or the cached answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from herd.teacher.base import Done, Teacher
from herd.teacher.cache import LEASE_S, ResponseCache
from herd.teacher.http_errors import (
    REDACTED,
    Failure,
    backoff_s,
    response_failure,
    transport_failure,
)
from herd.teacher.rate_limits import RateLimiter, estimate_tokens
from herd.teacher.request import Answer, Request, failed

log = logging.getLogger(__name__)

CHAT_PATH = "/chat/completions"
DEFAULT_DEADLINE_S = 900.0   # teacher.request_deadline_s: 3 attempts that run the full default timeout_s


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

    def _generate(self, todo: dict[str, Request], done: Done) -> None:
        asyncio.run(self._send_all(todo, done))

    async def _send_all(self, todo: dict[str, Request], done: Done) -> None:
        """Every request of `todo` at once, at most `max_in_flight` on the wire."""
        slots = asyncio.Semaphore(self.max_in_flight)

        async def one(key: str, req: Request, client: httpx.AsyncClient) -> None:
            done(key, await self._answer_one(client, slots, req, key))

        async with self._client() as client:
            await asyncio.gather(*(one(k, r, client) for k, r in todo.items()))

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
        return backoff_s(retry, self.backoff_base_s, self.backoff_max_s)

    async def _answer_one(self, client: httpx.AsyncClient, slots: asyncio.Semaphore,
                          req: Request, key: str) -> Answer:
        """Send one request, retrying what may pass next time within the deadline; never raises
        for a failed request."""
        body, cost = self._body(req), estimate_tokens(req)
        failure: Failure | None = None
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
                except Failure as exc:
                    failure = exc
                except Exception as exc:  # unforeseen: fail this request, not the batch
                    failure = Failure("error", self._redact(f"{type(exc).__name__}: {exc}"), retry=False)
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
        return failed(f"{kind}: {detail}")  # logged where it is stored

    async def _post(self, client: httpx.AsyncClient, body: dict, cost: int, timeout_s: float) -> Answer:
        """One HTTP attempt; raises Failure for anything that is not a usable answer."""
        try:
            resp = await asyncio.wait_for(client.post(self.url, json=body), timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException, httpx.RequestError) as exc:
            raise transport_failure(exc, timeout_s, self._redact) from None
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
            raise Failure("bad_response", self._redact(
                f"malformed or truncated JSON body ({type(exc).__name__}: {exc})"), retry=True) from None
        finish = choice.get("finish_reason")
        if not isinstance(text, str):
            raise Failure("no_content", f"the answer holds no text (finish_reason={finish})", retry=False)
        return Answer(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, extra={"model": data.get("model")})

    def _http_failure(self, resp: httpx.Response) -> Failure:
        return response_failure(resp, self._redact, key_sent=self._api_key is not None)

    def _record(self, key: str, attempt: int, t0: float, outcome: str, ans: Answer | None = None) -> None:
        if self.ledger is None:
            return
        self.ledger({"request_key": key, "attempt": attempt, "outcome": outcome,
                     "seconds": round(time.perf_counter() - t0, 4),
                     "prompt_tokens": ans.prompt_tokens if ans else 0,
                     "completion_tokens": ans.completion_tokens if ans else 0})
