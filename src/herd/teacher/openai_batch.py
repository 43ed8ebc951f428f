"""The `openai` teacher through the OpenAI Batch API: half the price, answers within 24 hours.

Answering (the cache look-up, leases and storing are herd.teacher.base's):

1. Cache keys are those of OpenAITeacher (backend "openai", `model_id`): both
   modes share answers. Requests in a batch the state file records as running
   are not sent again; that batch is followed instead.
2. The other missing requests become JSONL lines (``custom_id``: the cache key),
   split into files of at most `max_requests_per_file` lines and
   `max_bytes_per_file` bytes; each is uploaded (``POST {base_url}/files``,
   purpose "batch") and made a batch (``POST {base_url}/batches``).
3. Batches are polled (``GET {base_url}/batches/{id}``) every `poll_interval_s`
   until they end; with ``wait=False``, one round of polls, then
   `BatchesPending` if any still runs: rerun to collect.
4. An ended batch's output and error files are downloaded
   (``GET {base_url}/files/{id}/content``); each answer is stored at once. A
   failed line, or a request an expired, cancelled or failed batch never ran,
   gets ``error="batch: ..."`` and is not cached. The batch leaves the state's
   pending list, so a rerun sends only what is still missing.

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

HTTP failures on these endpoints are retried as chat requests are
(herd.teacher.http_errors); a step that still fails raises `BatchError`, and the
rerun resumes from the state.

Jobs sharing the cache: new requests are leased (herd.teacher.base) before they are
uploaded. Once a batch exists its requests' leases pass to the batch (holder
``batch:<id>``) for the completion window plus an hour, since the batch runs on
the server whether or not the job that made it is alive; collecting it ends them.
Requests leased by another job are waited for (``wait=True``) or reported as
pending (``wait=False``, `HeldElsewhere`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import httpx

from herd.io import read_json, write_json
from herd.teacher.base import Done, Waiting
from herd.teacher.batch_jsonl import (
    BATCH_ENDPOINT,
    request_line,
    result_answer,
    result_lines,
    split_lines,
)
from herd.teacher.cache import LEASE_S, ResponseCache
from herd.teacher.http_errors import ERROR_BODY_CHARS, Failure, transport_failure
from herd.teacher.openai_chat import DEFAULT_DEADLINE_S, OpenAITeacher
from herd.teacher.request import Answer, Request, failed

log = logging.getLogger(__name__)

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

    def _adopt(self, keys: list[str]) -> list[str]:
        """Keys in batches this job submitted earlier: followed, not sent again."""
        submitted = {k for entry in self._load_state()["pending"] for k in entry["keys"]}
        return [k for k in keys if k in submitted]

    def _before_wait(self, waiting: Waiting) -> None:
        if not self.wait:
            raise HeldElsewhere(len(waiting.keys), sorted(set(waiting.held.values())))

    def _generate(self, todo: dict[str, Request], done: Done) -> None:
        asyncio.run(self._run(todo, done))

    async def _run(self, todo: dict[str, Request], done: Done) -> None:
        """Follow the recorded batches that hold some of `todo`, submit the rest, collect all."""
        state = self._load_state()
        mine = [e for e in state["pending"] if not todo.keys().isdisjoint(e["keys"])]
        async with self._client() as client:
            for entry in mine:
                if entry["batch_id"] is None:  # the last run stopped between upload and batch creation
                    await self._create_batch(client, state, entry, resumed=True)
            running = {k for e in mine for k in e["keys"]}
            if mine:
                log.info("%d requests are in %d batches submitted earlier: following those, not resending",
                         len(running & todo.keys()), len(mine))
            new = [(k, request_line(k, self._body(r))) for k, r in todo.items() if k not in running]
            for part in split_lines(new, self.max_requests_per_file, self.max_bytes_per_file):
                entry = await self._upload(client, state, part)
                await self._create_batch(client, state, entry)
                mine.append(entry)
            await self._follow(client, state, mine, done)

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

    async def _follow(self, client: httpx.AsyncClient, state: dict, entries: list[dict], done: Done) -> None:
        """Poll `entries` until each ends (or once, with wait=False), collecting each as it ends."""
        while entries:
            running = {}
            for entry in list(entries):
                batch_id = entry["batch_id"]
                batch = await self._call(f"polling {batch_id}", partial(
                    client.get, f"{self.base_url}/batches/{batch_id}"), required=("status",))
                if batch["status"] in ENDED:
                    answers = await self._collect(client, batch, entry, done)
                    self._finish(state, entry, batch, answers)
                    entries.remove(entry)
                else:
                    counts = batch.get("request_counts") or {}
                    finished = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
                    running[batch_id] = f"{batch['status']} {finished}/{entry['requests']}"
            if not entries:
                break
            if not self.wait:
                raise BatchesPending(running, self.state_path)
            log.info("%d batches running (%s); next poll in %g s", len(running),
                     ", ".join(f"{b}: {s}" for b, s in running.items()), self.poll_interval_s)
            await asyncio.sleep(self.poll_interval_s)

    async def _collect(self, client: httpx.AsyncClient, batch: dict, entry: dict, done: Done) -> dict[str, Answer]:
        """The answer to each request of an ended batch, each good one passed to `done` as it is
        read (a kill from there on loses nothing); an error answer where it has none."""
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
                ans = result_answer(line, batch["id"], self._redact)
                if key not in got or not got[key].ok:
                    got[key] = ans
                    if ans.ok:
                        done(key, ans)
        missing = f"batch {batch['id']} ended {batch['status']!r} without a result for this request"
        if reasons := [e.get("message") for e in (batch.get("errors") or {}).get("data") or [] if isinstance(e, dict)]:
            missing += ": " + "; ".join(map(str, reasons))[:ERROR_BODY_CHARS]
        for key in entry["keys"]:
            if key not in got or not got[key].ok:
                got[key] = got.get(key) or failed("batch: " + self._redact(missing))
                done(key, got[key])
        return got

    async def _download(self, client: httpx.AsyncClient, file_id: str) -> list[dict]:
        text = await self._call(f"downloading {file_id}", lambda: client.get(
            f"{self.base_url}/files/{file_id}/content"), parse=lambda resp: resp.text)
        return result_lines(text, file_id)

    def _finish(self, state: dict, entry: dict, batch: dict, answers: dict[str, Answer]) -> None:
        """Move a collected batch from pending to finished: its uncached requests are free again."""
        answered = sum(answers[k].ok for k in entry["keys"])
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
        failure: Failure | None = None
        deadline = time.monotonic() + self.request_deadline_s
        for attempt in range(self.max_retries + 1):
            timeout_s = min(self.timeout_s, deadline - time.monotonic())
            try:
                resp = await asyncio.wait_for(send(), timeout_s)
                if not resp.is_success:
                    raise self._http_failure(resp)
                return parse(resp)
            except Failure as exc:
                failure = exc
            except (asyncio.TimeoutError, httpx.TimeoutException, httpx.RequestError) as exc:
                failure = transport_failure(exc, timeout_s, self._redact)
            except (ValueError, KeyError, TypeError) as exc:
                failure = Failure("bad_response", self._redact(
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
