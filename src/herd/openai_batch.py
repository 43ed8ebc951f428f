"""The `openai` teacher through the OpenAI Batch API: half the price, answers within 24 hours.

`OpenAIBatchTeacher.answer(requests)`:

1. Cache first. The backend ("openai") and `model_id` are those of
   OpenAITeacher, so both modes make the same cache keys and share answers.
2. Requests that the state file records in a batch still running are not sent
   again; those batches are followed instead.
3. The other uncached requests become JSONL lines whose ``custom_id`` is the
   request's cache key, split into files of at most `max_requests_per_file`
   lines and `max_bytes_per_file` bytes. Each file is uploaded
   (``POST {base_url}/files``, purpose "batch"), then a batch is made from it
   (``POST {base_url}/batches``).
4. Batches are polled (``GET {base_url}/batches/{id}``) every `poll_interval_s`
   until they end. With ``wait=False`` there is one round of polls, then
   `BatchesPending` if any batch still runs: rerun to collect.
5. An ended batch's output and error files are downloaded
   (``GET {base_url}/files/{id}/content``). Each answer goes into the cache at
   once; a line that failed becomes ``Answer(text=None, error="batch: ...")``
   and is not cached, nor is a request that an expired, cancelled or failed
   batch never ran. The batch then leaves the state's pending list, so a rerun
   sends only the requests still missing from the cache.

Resumable at every step: the state file is rewritten atomically after each
upload, batch creation and collection, so a kill loses at most the step in
flight. A file recorded as "uploaded" without a batch gets its batch on rerun
(first looking among recent batches for one already made from that file, in
case the kill came after the server made it and before the state recorded it).
A kill during an upload leaves an unused file on the server and the requests
are uploaded again.

State file (JSON; request keys and server ids only, never a prompt or the key)::

    {"version": 1,
     "pending": [{"status": "uploaded" | "submitted", "file_id": "file-...",
                  "batch_id": null | "batch_...", "requests": 3, "bytes": 1234,
                  "uploaded_at": "...Z", "submitted_at": "...Z", "keys": ["<request key>", ...]}],
     "finished": [{"batch_id": "batch_...", "file_id": "file-...", "status": "completed",
                   "requests": 3, "answered": 3, "failed": 0, "finished_at": "...Z"}]}

HTTP failures on these endpoints are retried as in OpenAITeacher (408, 429,
5xx, timeouts and connection errors, with backoff or after Retry-After, each
retry logged, within `request_deadline_s` per call); a step that still fails
raises `BatchError`, and the rerun resumes from the state.

Jobs sharing the cache: new requests are leased (herd.teacher) before they are
uploaded, so two jobs never submit the same request. Once a batch exists its
requests' leases pass to the batch (holder ``batch:<id>``) for the completion
window plus an hour, since the batch runs on the server whether or not the job
that made it is alive; collecting the batch ends them. Requests leased by
another job are waited for (``wait=True``) or reported as pending
(``wait=False``, `HeldElsewhere`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import httpx
from tqdm import tqdm

from herd.io import read_json, write_json
from herd.openai_teacher import (
    DEFAULT_DEADLINE_S,
    ERROR_BODY_CHARS,
    OpenAITeacher,
    _Failure,
)
from herd.teacher import LEASE_S, Answer, Request, ResponseCache, request_key

log = logging.getLogger(__name__)

BATCH_ENDPOINT = "/v1/chat/completions"  # every input line's `url` and the batch's `endpoint`
COMPLETION_WINDOW = "24h"
MAX_REQUESTS_PER_FILE = 50_000           # OpenAI's limits for one batch input file
MAX_BYTES_PER_FILE = 200_000_000
ENDED = ("completed", "failed", "expired", "cancelled")
STATE_VERSION = 1
RECENT_BATCHES = 100                     # how many recent batches to search for one made from a file
DEFAULT_POLL_INTERVAL_S = 60.0
INPUT_FILENAME = "herd-batch.jsonl"
BATCH_LEASE_S = 25 * 3600.0              # a batch's requests stay leased for its 24 h window and an hour


class BatchError(RuntimeError):
    """A Batch API step failed after its retries; the state file keeps what was done."""


class BatchesPending(RuntimeError):
    """Batches are still running (``wait=False``); answers of ended ones are already cached."""

    def __init__(self, running: dict[str, str], state_path: Path):
        self.running = running  # batch id -> "status done/total"
        listed = ", ".join(f"{batch_id} ({status})" for batch_id, status in running.items())
        super().__init__(f"{len(running)} OpenAI batch(es) still running: {listed}; "
                         f"they are recorded in {state_path}: rerun to collect")


class HeldElsewhere(BatchesPending):
    """Requests are being answered by another job (``wait=False``); rerun to take their answers."""

    def __init__(self, count: int, holders: list[str]):
        self.running = {}
        self.holders = holders
        RuntimeError.__init__(self, f"{count} requests are being answered by another job sharing the "
                                    f"cache (holder {', '.join(holders)}): rerun to take their answers")


def split_lines(lines: list[tuple[str, bytes]], max_requests: int, max_bytes: int) -> list[list[tuple[str, bytes]]]:
    """Cut (key, line) pairs, in order, into parts of at most `max_requests` lines and `max_bytes` bytes."""
    parts: list[list[tuple[str, bytes]]] = []
    size = 0
    for key, line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"one batch line is {len(line)} bytes, more than max_bytes_per_file={max_bytes}")
        if not parts or len(parts[-1]) >= max_requests or size + len(line) > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append((key, line))
        size += len(line)
    return parts


def _json(resp: httpx.Response, *required: str) -> dict:
    """The response's JSON object; a KeyError (retried as a malformed body) if a field is missing."""
    data = resp.json()
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    for name in required:
        if not data.get(name):
            raise KeyError(name)
    return data


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class OpenAIBatchTeacher(OpenAITeacher):
    """The OpenAI teacher in Batch API mode (see the module doc); reuses OpenAITeacher's HTTP helpers."""

    def __init__(self, base_url: str, model: str, api_key: str | None, cache: ResponseCache,
                 state_path: str | Path, *, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
                 wait: bool = True, max_requests_per_file: int = MAX_REQUESTS_PER_FILE,
                 max_bytes_per_file: int = MAX_BYTES_PER_FILE, model_id: str | None = None,
                 timeout_s: float = 300.0, max_retries: int = 6,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 request_deadline_s: float = DEFAULT_DEADLINE_S, lease_s: float = LEASE_S):
        """`state_path`: one JSON file per caller (e.g. per stage and shard), kept beside the cache.

        `wait=False` polls once and raises BatchesPending while batches run.
        `timeout_s` bounds one HTTP attempt (uploads and downloads included);
        `request_deadline_s` one call's attempts and the waits between them.
        """
        if max_requests_per_file < 1 or max_bytes_per_file < 1 or poll_interval_s < 0:
            raise ValueError("max_requests_per_file and max_bytes_per_file must be >= 1, poll_interval_s >= 0")
        super().__init__(base_url, model, api_key, cache, timeout_s=timeout_s, max_retries=max_retries,
                         backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                         request_deadline_s=request_deadline_s, lease_s=lease_s, model_id=model_id)
        self.base_url = base_url.rstrip("/")
        self.state_path = Path(state_path)
        self.poll_interval_s = poll_interval_s
        self.wait = wait
        self.max_requests_per_file = max_requests_per_file
        self.max_bytes_per_file = max_bytes_per_file
        self.stats["batches"] = 0

    def __repr__(self) -> str:
        return f"OpenAIBatchTeacher(base_url={self.base_url!r}, model={self.model!r})"

    async def answer_async(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        """Answers in the order of `requests`; raises BatchesPending (wait=False) or BatchError."""
        start = time.perf_counter()
        try:
            keys = [request_key(self.backend, self.model_id, r) for r in requests]
            cached = {k: a for k in dict.fromkeys(keys) if (a := self.cache.get(k)) is not None}
            todo = {k: r for k, r in zip(keys, requests) if k not in cached}
            fresh: dict[str, Answer] = {}
            if todo:
                async with self._client() as client:
                    await self._run(client, todo, fresh, desc)
        finally:
            self.stats["seconds"] += time.perf_counter() - start
        answers = [cached.get(k) or fresh[k] for k in keys]
        self._count(answers, 0.0)  # seconds were added above, even when this call raised
        return answers

    async def _run(self, client: httpx.AsyncClient, todo: dict[str, Request],
                   results: dict[str, Answer], desc: str) -> None:
        """Follow the recorded batches that hold some of `todo`, submit the rest, collect all."""
        state = self._load_state()
        mine = [e for e in state["pending"] if not todo.keys().isdisjoint(e["keys"])]
        for entry in mine:
            if entry["batch_id"] is None:  # the last run stopped between upload and batch creation
                await self._create_batch(client, state, entry, resumed=True)
        running = {k for e in mine for k in e["keys"]}
        if mine:
            log.info("%d requests are in %d batches submitted earlier: following those, not resending",
                     len(running & todo.keys()), len(mine))
        keys = [k for k in todo if k not in running]
        answers: list[Answer | None] = [None] * len(keys)
        with self._leasing():
            now, others = self._claim(keys, answers, list(range(len(keys))))
            while True:
                new = [(keys[i], self._line(keys[i], todo[keys[i]])) for i in now]
                for part in split_lines(new, self.max_requests_per_file, self.max_bytes_per_file):
                    entry = await self._upload(client, state, part)
                    await self._create_batch(client, state, entry)
                    mine.append(entry)
                if mine:
                    await self._follow(client, state, mine, results, desc)
                mine, now = [], []
                while others.wait and not now:
                    if not self.wait:
                        leases = [self.cache.lease(keys[i]) for i in others.wait]
                        raise HeldElsewhere(len(others.wait), sorted({lease[0] for lease in leases if lease}))
                    await asyncio.sleep(others.interval)
                    now = others.poll()
                if not now:
                    break
        for key, ans in zip(keys, answers):
            if ans is not None and key not in results:  # answered by another job
                results[key] = ans

    def _line(self, key: str, req: Request) -> bytes:
        line = {"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT, "body": self._body(req)}
        return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    # --- the steps, each followed by a state update -----------------------------------------

    async def _upload(self, client: httpx.AsyncClient, state: dict, part: list[tuple[str, bytes]]) -> dict:
        data = b"".join(line for _, line in part)
        file = await self._call(
            f"uploading a batch input file ({len(part)} requests, {len(data)} bytes)",
            lambda: client.post(f"{self.base_url}/files", data={"purpose": "batch"},
                                files={"file": (INPUT_FILENAME, data, "application/jsonl")}),
            required=("id",))
        entry = {"status": "uploaded", "file_id": file["id"], "batch_id": None, "requests": len(part),
                 "bytes": len(data), "uploaded_at": _now(), "keys": [key for key, _ in part]}
        state["pending"].append(entry)
        self._save_state(state)
        log.info("uploaded %s: %d requests, %d bytes", file["id"], len(part), len(data))
        return entry

    async def _create_batch(self, client: httpx.AsyncClient, state: dict, entry: dict,
                            resumed: bool = False) -> None:
        file_id = entry["file_id"]
        batch = await self._find_batch(client, file_id) if resumed else None
        if batch is not None:
            log.info("found %s, made from %s before the last run stopped", batch["id"], file_id)
        else:
            batch = await self._call(
                f"creating a batch from {file_id}",
                lambda: client.post(f"{self.base_url}/batches", json={
                    "input_file_id": file_id, "endpoint": BATCH_ENDPOINT,
                    "completion_window": COMPLETION_WINDOW}),
                required=("id",))
            self.stats["batches"] += 1
            log.info("created %s from %s (%d requests)", batch["id"], file_id, entry["requests"])
        entry.update(status="submitted", batch_id=batch["id"], submitted_at=_now())
        self._save_state(state)
        # the batch runs on the server whether or not this job lives: it holds the leases now
        self.cache.lease_to(entry["keys"], f"batch:{batch['id']}", BATCH_LEASE_S)

    async def _find_batch(self, client: httpx.AsyncClient, file_id: str) -> dict | None:
        """A recent batch made from `file_id`, or None (also when the server cannot list batches)."""
        try:
            page = await self._call("listing recent batches", lambda: client.get(
                f"{self.base_url}/batches", params={"limit": RECENT_BATCHES}))
        except BatchError as exc:
            log.warning("%s; creating a batch from %s", exc, file_id)
            return None
        found = [b for b in page.get("data") or [] if isinstance(b, dict) and b.get("input_file_id") == file_id]
        return found[0] if found and found[0].get("id") else None

    async def _follow(self, client: httpx.AsyncClient, state: dict, entries: list[dict],
                      results: dict[str, Answer], desc: str) -> None:
        """Poll `entries` until each ends (or once, with wait=False), collecting each as it ends."""
        bar = tqdm(total=sum(e["requests"] for e in entries), desc=desc, mininterval=5, unit="req")
        finished = 0
        try:
            while entries:
                running, progress = {}, 0
                for entry in list(entries):
                    batch_id = entry["batch_id"]
                    batch = await self._call(f"polling {batch_id}", partial(
                        client.get, f"{self.base_url}/batches/{batch_id}"), required=("status",))
                    if batch["status"] in ENDED:
                        await self._collect(client, batch, entry, results)
                        self._finish(state, entry, batch, results)
                        entries.remove(entry)
                        finished += entry["requests"]
                    else:
                        counts = batch.get("request_counts") or {}
                        done = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
                        running[batch_id] = f"{batch['status']} {done}/{entry['requests']}"
                        progress += done
                bar.update(finished + progress - bar.n)
                if not entries:
                    break
                if not self.wait:
                    raise BatchesPending(running, self.state_path)
                log.info("%d batches running (%s); next poll in %g s", len(running),
                         ", ".join(f"{b}: {s}" for b, s in running.items()), self.poll_interval_s)
                await asyncio.sleep(self.poll_interval_s)
        finally:
            bar.close()

    async def _collect(self, client: httpx.AsyncClient, batch: dict, entry: dict,
                       results: dict[str, Answer]) -> None:
        """Cache the answers of an ended batch; each of its other requests gets an error answer."""
        keys = set(entry["keys"])
        got: dict[str, Answer] = {}
        for field in ("output_file_id", "error_file_id"):
            if not (file_id := batch.get(field)):
                continue
            for line in await self._download(client, file_id):
                key = line.get("custom_id")
                if not isinstance(key, str) or key not in keys:
                    log.warning("%s: ignoring a result for an unknown custom_id %r", file_id, key)
                    continue
                ans = self._parse_result(line, batch["id"])
                if ans.ok:  # at once: a kill from here on loses nothing
                    self.cache.put(key, ans, holder=f"batch:{batch['id']}")
                if key not in got or not got[key].ok:
                    got[key] = ans
        missing = f"batch {batch['id']} ended {batch['status']!r} without a result for this request"
        if reasons := [e.get("message") for e in (batch.get("errors") or {}).get("data") or [] if isinstance(e, dict)]:
            missing += ": " + "; ".join(map(str, reasons))[:ERROR_BODY_CHARS]
        for key in entry["keys"]:
            results[key] = got.get(key) or Answer(text=None, error="batch: " + self._redact(missing))

    async def _download(self, client: httpx.AsyncClient, file_id: str) -> list[dict]:
        text = await self._call(f"downloading {file_id}", lambda: client.get(
            f"{self.base_url}/files/{file_id}/content"), parse=lambda resp: resp.text)
        lines = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            try:
                line = json.loads(raw) if raw.strip() else None
            except ValueError:
                line = None
                log.warning("%s:%d: not valid JSON; that request counts as unanswered", file_id, lineno)
            if isinstance(line, dict):
                lines.append(line)
        return lines

    def _parse_result(self, line: dict, batch_id: str) -> Answer:
        """One output or error line as an Answer; an error Answer for anything but a usable completion."""
        def failed(detail: str) -> Answer:
            return Answer(text=None, error="batch: " + self._redact(detail)[:ERROR_BODY_CHARS])

        response = line.get("response")
        response = response if isinstance(response, dict) else {}
        body = response.get("body")
        if error := line.get("error"):
            if isinstance(error, dict):
                return failed(f"{error.get('code')}: {error.get('message')}")
            return failed(str(error))
        if not isinstance(body, dict) or response.get("status_code") != 200:
            message = body.get("error") if isinstance(body, dict) else body
            if isinstance(message, dict):
                message = message.get("message")
            return failed(f"HTTP {response.get('status_code')}: {message}")
        try:
            choice = body["choices"][0]
            text, finish = choice["message"]["content"], choice.get("finish_reason")
            usage = body.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            return failed(f"malformed result ({type(exc).__name__}: {exc})")
        if not isinstance(text, str):
            return failed(f"the answer holds no text (finish_reason={finish})")
        return Answer(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens,
                      extra={"model": body.get("model"), "batch_id": batch_id})

    def _finish(self, state: dict, entry: dict, batch: dict, results: dict[str, Answer]) -> None:
        """Move a collected batch from pending to finished: its uncached requests are free again."""
        answered = sum(results[k].ok for k in entry["keys"])
        state["pending"].remove(entry)
        self.cache.release(f"batch:{batch['id']}")  # its failed requests are free to be sent again
        state["finished"].append({"batch_id": batch["id"], "file_id": entry["file_id"],
                                  "status": batch["status"], "requests": entry["requests"],
                                  "answered": answered, "failed": entry["requests"] - answered,
                                  "finished_at": _now()})
        self._save_state(state)
        log.info("%s %s: %d answered, %d failed", batch["id"], batch["status"],
                 answered, entry["requests"] - answered)

    # --- HTTP with retries, and the state file ----------------------------------------------

    async def _call(self, what: str, send: Callable[[], Awaitable[httpx.Response]],
                    parse: Callable[[httpx.Response], object] | None = None,
                    required: tuple[str, ...] = ()):
        """One Batch API call, retried like a chat request; raises BatchError when it cannot succeed."""
        parse = parse or (lambda resp: _json(resp, *required))
        failure: _Failure | None = None
        deadline = time.monotonic() + self.request_deadline_s
        for attempt in range(self.max_retries + 1):
            timeout_s = min(self.timeout_s, deadline - time.monotonic())
            try:
                resp = await asyncio.wait_for(send(), timeout_s)
                if not resp.is_success:
                    raise self._http_failure(resp)
                return parse(resp)
            except _Failure as exc:
                failure = exc
            except (asyncio.TimeoutError, httpx.TimeoutException):
                failure = _Failure("timeout", f"no answer within {timeout_s:.3g} s", retry=True)
            except httpx.RequestError as exc:
                failure = _Failure("connection", self._redact(f"{type(exc).__name__}: {exc}"), retry=True)
            except (ValueError, KeyError, TypeError) as exc:
                failure = _Failure("bad_response", self._redact(
                    f"malformed JSON body ({type(exc).__name__}: {exc})"), retry=True)
            if not failure.retry or attempt == self.max_retries:
                break
            wait = failure.wait_s if failure.wait_s is not None else self._backoff_s(attempt + 1)
            if wait >= (left := deadline - time.monotonic()):
                raise BatchError(f"{what}: no answer within teacher.request_deadline_s="
                                 f"{self.request_deadline_s:g} s ({attempt + 1} attempts; the last "
                                 f"failed with {failure})")
            self.stats["retries"] += 1
            log.warning("%s: attempt %d of %d failed (%s); retrying in %.2f s (%.1f s left of "
                        "teacher.request_deadline_s=%g)", what, attempt + 1, self.max_retries + 1,
                        failure, wait, left, self.request_deadline_s)
            await asyncio.sleep(wait)
        gave_up = f" (gave up after {attempt + 1} attempts)" if failure.retry else ""
        raise BatchError(f"{what}: {failure}{gave_up}")

    def _load_state(self) -> dict:
        if not self.state_path.exists():
            return {"version": STATE_VERSION, "pending": [], "finished": []}
        state = read_json(self.state_path)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path}: batch state version {state.get('version')!r}, "
                             f"expected {STATE_VERSION}")
        return state

    def _save_state(self, state: dict) -> None:
        write_json(self.state_path, state)
