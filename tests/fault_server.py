"""An OpenAI-compatible test server that misbehaves on cue.

It serves ``POST /v1/chat/completions`` on 127.0.0.1 (ephemeral port) from a
background thread. The answer to a request is `expected_answer` of its last
user message, so a test can check that each answer went to its request.

A *script* decides what each request gets; a request for which it says
nothing gets a normal answer. It may be
- a list: entry N is for the N-th request received (0-based),
- a dict: message content -> list of faults for its 1st, 2nd, ... arrival,
- a callable ``(n, content) -> Fault | None``.

Faults: ``status(429, retry_after=1)``, ``status(500)``, ``HANG`` (sleep past
the client's timeout, then drop the connection), ``TRUNCATE`` (200 with half
a JSON body), ``CLOSE`` (drop the connection without a reply), and
``ok(headers)`` (a normal answer with extra headers, e.g. rate-limit ones).

The server counts what it receives (`total`, `by_content`, `by_status`,
`max_in_flight`), keeps every Authorization header (`auth`) and request body
(`bodies`), and with ``api_key=...`` answers 401 to any other key, echoing
the key it got the way a careless server might (scripted error statuses
echo it too). Add endpoints by adding a method and an entry in `routes`
(``(method, "/v1/path/{name}")`` -> handler ``(h, raw, name=...)``).

    with FaultServer(script={"q": [status(503)]}, latency=0.05) as server:
        ...server.base_url...    # "http://127.0.0.1:PORT/v1"
        assert server.by_content["q"] == 2

The Batch API is served too: ``POST /v1/files`` (multipart: purpose, file),
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches``
(newest first) and ``GET /v1/batches/{id}``. A batch is "validating" when
created, "in_progress" when polled, and ends on its `batch_polls`-th poll as
`batch_end` ("completed", "expired", "cancelled" or "failed"); an expired or
cancelled batch has run only its first `batch_done` lines. Every line that ran
answers `expected_answer` in the output file, except lines whose custom_id or
last user message is in `failing`: those go to the error file (HTTP 400), as
do the lines an expired batch never ran. `batch_faults` scripts HTTP faults
per endpoint ("upload", "create", "list", "poll", "content") and arrival.
Counters: `files_uploaded`, `batches_created`, `polls`, `downloads`,
`lines_by_content` (input lines uploaded, by last user message).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from herd.teacher import Decoding, Request

CHAT_PATH = "/v1/chat/completions"
BATCH_ENDS = ("completed", "expired", "cancelled", "failed")
BATCH_LINE_ERRORS = {  # status -> (code, message) of each line a batch ending so never ran
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed: the batch was cancelled."),
}
DEFAULT_HANG_S = 10.0
LISTEN_BACKLOG = 128
POLL_S = 0.05


@dataclass(frozen=True)
class Fault:
    """What the server does with one request: kind is ok, status, hang, truncate or close."""

    kind: str
    status: int = 200
    retry_after: float | None = None
    headers: dict = field(default_factory=dict)


def status(code: int, retry_after: float | None = None) -> Fault:
    return Fault("status", code, retry_after)


def ok(headers: dict | None = None) -> Fault:
    return Fault("ok", headers=dict(headers or {}))


HANG = Fault("hang")
TRUNCATE = Fault("truncate")
CLOSE = Fault("close")


def expected_answer(content: str) -> str:
    """The server's answer to a request whose last user message is `content`."""
    return "answer-" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def _last_user_message(body: dict) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
    owner: FaultServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    disable_nagle_algorithm = True  # else headers and body in two writes wait ~40 ms for a delayed ACK
    server: _HTTPServer

    def log_message(self, format, *args):  # quiet
        pass

    def do_POST(self):
        self.dispatch("POST")

    def do_GET(self):
        self.dispatch("GET")

    def dispatch(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route, params = self.server.owner.route(method, self.path.split("?")[0])
        try:
            if route is None:
                self.reply(404, {"error": {"message": f"no route {method} {self.path}"}})
            else:
                route(self, raw, **params)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            self.close_connection = True

    def reply(self, code: int, payload: dict | bytes, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(body)


class FaultServer:
    """A scripted chat-completions server; a context manager (see the module doc)."""

    def __init__(self, script: list | dict | Callable | None = None,
                 latency: float | Callable[[int, str], float] = 0.0,
                 hang_s: float = DEFAULT_HANG_S, api_key: str | None = None,
                 batch_polls: int = 2, batch_end: str = "completed", batch_done: int = 0,
                 failing: Collection[str] = (), batch_faults: dict[str, list[Fault]] | None = None):
        if batch_end not in BATCH_ENDS:
            raise ValueError(f"batch_end must be one of {BATCH_ENDS}")
        self.script = script
        self.latency = latency
        self.hang_s = hang_s
        self.api_key = api_key
        self.routes = {("POST", CHAT_PATH): self._chat,
                       ("POST", "/v1/files"): self._upload_file,
                       ("GET", "/v1/files/{file_id}/content"): self._file_content,
                       ("POST", "/v1/batches"): self._create_batch,
                       ("GET", "/v1/batches"): self._list_batches,
                       ("GET", "/v1/batches/{batch_id}"): self._get_batch}
        self.batch_polls, self.batch_end, self.batch_done = batch_polls, batch_end, batch_done
        self.failing = set(failing)
        self.batch_faults = dict(batch_faults or {})
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.files_uploaded = self.batches_created = self.polls = self.downloads = 0
        self.lines_by_content: Counter = Counter()
        self.endpoint_calls: Counter = Counter()
        self._ids = itertools.count(1)
        self.total = 0
        self.by_content: Counter = Counter()
        self.by_status: Counter = Counter()
        self.auth: list[str | None] = []
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FaultServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": POLL_S}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _fault(self, n: int, content: str, arrival: int) -> Fault:
        script = self.script
        if callable(script):
            chosen = script(n, content)
        elif isinstance(script, dict):
            faults = script.get(content, [])
            chosen = faults[arrival] if arrival < len(faults) else None
        elif isinstance(script, list):
            chosen = script[n] if n < len(script) else None
        else:
            chosen = None
        return chosen or ok()

    def _chat(self, h: _Handler, raw: bytes) -> None:
        body = json.loads(raw)
        content = _last_user_message(body)
        with self._lock:
            n = self.total
            self.total += 1
            arrival = self.by_content[content]
            self.by_content[content] += 1
            self.auth.append(h.headers.get("Authorization"))
            self.bodies.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            fault = self._fault(n, content, arrival)
            delay = self.latency(n, content) if callable(self.latency) else self.latency
            if delay:
                self._stop.wait(delay)
            self._respond(h, body, content, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _count(self, outcome: int | str) -> None:
        with self._lock:
            self.by_status[outcome] += 1

    def _misbehave(self, h: _Handler, fault: Fault) -> bool:
        """Answer 401 to a wrong key, or carry out a hang, close or status fault; False if none applies."""
        got = h.headers.get("Authorization")
        if self.api_key is not None and got != f"Bearer {self.api_key}":
            self._count(401)
            h.reply(401, {"error": {"message": f"Incorrect API key provided: {got}",
                                    "type": "invalid_request_error"}})
            return True
        if fault.kind in ("hang", "close"):
            self._count(fault.kind)
            if fault.kind == "hang":
                self._stop.wait(self.hang_s)
            h.close_connection = True  # no reply at all
            return True
        if fault.kind == "status":
            self._count(fault.status)
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            h.reply(fault.status, {"error": {"message": f"scripted {fault.status}; you sent {got}",
                                             "type": "server_error"}}, headers)
            return True
        return False

    def _completion(self, body: dict, content: str) -> dict:
        return {
            "id": f"chatcmpl-{self.total}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": expected_answer(content)}}],
            "usage": {"prompt_tokens": len(content.split()), "completion_tokens": 1,
                      "total_tokens": len(content.split()) + 1},
        }

    def _respond(self, h: _Handler, body: dict, content: str, fault: Fault) -> None:
        if self._misbehave(h, fault):
            return None
        payload = json.dumps(self._completion(body, content)).encode()
        if fault.kind == "truncate":
            self._count("truncate")
            return h.reply(200, payload[: len(payload) // 2])
        self._count(200)
        return h.reply(200, payload, fault.headers)

    # --- routing and the Batch API -------------------------------------------------------

    def route(self, method: str, path: str) -> tuple[Callable | None, dict]:
        for (verb, pattern), handler in self.routes.items():
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
            if verb == method and (m := re.fullmatch(regex, path)):
                return handler, m.groupdict()
        return None, {}

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _batch_endpoint(self, h: _Handler, name: str) -> bool:
        """Count a call to a batch endpoint and apply its scripted fault; True if it was answered."""
        with self._lock:
            arrival = self.endpoint_calls[name]
            self.endpoint_calls[name] += 1
        faults = self.batch_faults.get(name, [])
        return self._misbehave(h, faults[arrival] if arrival < len(faults) else ok())

    def _store_file(self, lines: list[dict]) -> str | None:
        if not lines:
            return None
        file_id = self._new_id("file-")
        self.files[file_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return file_id

    def _upload_file(self, h: _Handler, raw: bytes) -> None:
        if self._batch_endpoint(h, "upload"):
            return None
        head = f"Content-Type: {h.headers.get('Content-Type')}\r\n\r\n".encode()
        form = email.message_from_bytes(head + raw, policy=email.policy.HTTP)
        parts = {p.get_param("name", header="content-disposition"): p
                 for p in (form.iter_parts() if form.is_multipart() else [])}
        if "file" not in parts or "purpose" not in parts:
            return h.reply(400, {"error": {"message": "multipart form needs 'purpose' and 'file'"}})
        purpose = parts["purpose"].get_payload(decode=True).decode()
        data = parts["file"].get_payload(decode=True)
        try:
            lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        except ValueError:
            return h.reply(400, {"error": {"message": "the file is not JSONL"}})
        with self._lock:
            file_id = self._new_id("file-")
            self.files[file_id] = data
            self.files_uploaded += 1
            self.lines_by_content.update(_last_user_message(line.get("body", {})) for line in lines)
        return h.reply(200, {"id": file_id, "object": "file", "bytes": len(data), "purpose": purpose,
                             "filename": parts["file"].get_filename(), "created_at": int(time.time())})

    def _file_content(self, h: _Handler, raw: bytes, file_id: str) -> None:
        if self._batch_endpoint(h, "content"):
            return None
        if file_id not in self.files:
            return h.reply(404, {"error": {"message": f"no file {file_id}"}})
        with self._lock:
            self.downloads += 1
        return h.reply(200, self.files[file_id], content_type="application/octet-stream")

    def _create_batch(self, h: _Handler, raw: bytes) -> None:
        if self._batch_endpoint(h, "create"):
            return None
        req = json.loads(raw)
        data = self.files.get(req.get("input_file_id"))
        if data is None:
            return h.reply(404, {"error": {"message": f"no file {req.get('input_file_id')}"}})
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        problems = [f"{name} {req.get(name)!r}" for name, want in
                    (("endpoint", CHAT_PATH), ("completion_window", "24h")) if req.get(name) != want]
        problems += [f"line {i}" for i, line in enumerate(lines)
                     if line.get("method") != "POST" or line.get("url") != CHAT_PATH or "model" not in line.get("body", {})]
        if len({line.get("custom_id") for line in lines}) != len(lines):
            problems.append("duplicate custom_id")
        if problems:
            return h.reply(400, {"error": {"message": "invalid batch: " + ", ".join(problems)}})
        with self._lock:
            batch_id = self._new_id("batch_")
            self.batches_created += 1
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                "input_file_id": req["input_file_id"], "completion_window": "24h",
                "status": "validating", "output_file_id": None, "error_file_id": None,
                "created_at": int(time.time()), "metadata": req.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "_polls": 0, "_end": self.batch_end, "_lines": lines}
        return h.reply(200, _public(self.batches[batch_id]))

    def _list_batches(self, h: _Handler, raw: bytes) -> None:
        if self._batch_endpoint(h, "list"):
            return None
        data = [_public(b) for b in reversed(self.batches.values())]
        return h.reply(200, {"object": "list", "data": data, "has_more": False})

    def _get_batch(self, h: _Handler, raw: bytes, batch_id: str) -> None:
        if self._batch_endpoint(h, "poll"):
            return None
        batch = self.batches.get(batch_id)
        if batch is None:
            return h.reply(404, {"error": {"message": f"no batch {batch_id}"}})
        with self._lock:
            self.polls += 1
            batch["_polls"] += 1
            if batch["status"] not in BATCH_ENDS:
                if batch["_polls"] >= self.batch_polls:
                    self._finish_batch(batch)
                else:
                    batch["status"] = "in_progress"
        return h.reply(200, _public(batch))

    def _finish_batch(self, batch: dict) -> None:
        """Run the batch's lines (all, the first `batch_done`, or none) and end it."""
        end, lines = batch["_end"], batch["_lines"]
        ran = {"completed": len(lines), "failed": 0}.get(end, self.batch_done)
        out, err = [], []
        for i, line in enumerate(lines[:ran]):
            content = _last_user_message(line["body"])
            result = {"id": f"batch_req_{batch['id']}_{i}", "custom_id": line["custom_id"], "error": None}
            if line["custom_id"] in self.failing or content in self.failing:
                result["response"] = {"status_code": 400, "request_id": f"req_{i}", "body": {"error": {
                    "message": f"scripted line failure for {content!r}", "type": "invalid_request_error"}}}
                err.append(result)
            else:
                result["response"] = {"status_code": 200, "request_id": f"req_{i}",
                                      "body": self._completion(line["body"], content)}
                out.append(result)
        if end in BATCH_LINE_ERRORS:
            code, message = BATCH_LINE_ERRORS[end]
            err += [{"id": f"batch_req_{batch['id']}_{i}", "custom_id": line["custom_id"], "response": None,
                     "error": {"code": code, "message": message}} for i, line in enumerate(lines) if i >= ran]
        if end == "failed":
            batch["errors"] = {"object": "list", "data": [
                {"code": "invalid_request", "message": "scripted batch failure", "line": None}]}
        batch.update(status=end, output_file_id=self._store_file(out), error_file_id=self._store_file(err),
                     request_counts={"total": len(lines), "completed": len(out), "failed": len(err)})


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


@pytest.fixture
def fault_server():
    """A factory: ``fault_server(script=..., latency=...)`` starts a server, stopped after the test."""
    servers = []

    def start(**kwargs) -> FaultServer:
        servers.append(FaultServer(**kwargs).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


CHAT_DECODING = Decoding(temperature=0.5, top_p=0.9, max_tokens=16)


def requests_for(contents: list[str]) -> list[Request]:
    """One chat request per content, as the client tests send them."""
    return [Request(messages=[{"role": "system", "content": "Be concise."},
                              {"role": "user", "content": c}], decoding=CHAT_DECODING, seed=7)
            for c in contents]
