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
echo it too). Add endpoints (files,
batches) by adding a method and an entry in `routes`.

    with FaultServer(script={"q": [status(503)]}, latency=0.05) as server:
        ...server.base_url...    # "http://127.0.0.1:PORT/v1"
        assert server.by_content["q"] == 2
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

CHAT_PATH = "/v1/chat/completions"
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
    owner: "FaultServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    server: _HTTPServer

    def log_message(self, format, *args):  # quiet
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = self.server.owner.routes.get(self.path.split("?")[0])
        try:
            if route is None:
                self.reply(404, {"error": {"message": f"no route {self.path}"}})
            else:
                route(self, raw)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            self.close_connection = True

    def reply(self, code: int, payload: dict | bytes, headers: dict | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(body)


class FaultServer:
    """A scripted chat-completions server; a context manager (see the module doc)."""

    def __init__(self, script: list | dict | Callable | None = None,
                 latency: float | Callable[[int, str], float] = 0.0,
                 hang_s: float = DEFAULT_HANG_S, api_key: str | None = None):
        self.script = script
        self.latency = latency
        self.hang_s = hang_s
        self.api_key = api_key
        self.routes = {CHAT_PATH: self._chat}
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

    def start(self) -> "FaultServer":
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

    def __enter__(self) -> "FaultServer":
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

    def _respond(self, h: _Handler, body: dict, content: str, fault: Fault) -> None:
        got = h.headers.get("Authorization")
        if self.api_key is not None and got != f"Bearer {self.api_key}":
            self._count(401)
            return h.reply(401, {"error": {"message": f"Incorrect API key provided: {got}",
                                           "type": "invalid_request_error"}})
        if fault.kind in ("hang", "close"):
            self._count(fault.kind)
            if fault.kind == "hang":
                self._stop.wait(self.hang_s)
            h.close_connection = True  # no reply at all
            return None
        if fault.kind == "status":
            self._count(fault.status)
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return h.reply(fault.status, {"error": {"message": f"scripted {fault.status}; you sent {got}",
                                                    "type": "server_error"}}, headers)
        text = expected_answer(content)
        completion = {
            "id": f"chatcmpl-{self.total}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(content.split()), "completion_tokens": 1,
                      "total_tokens": len(content.split()) + 1},
        }
        payload = json.dumps(completion).encode()
        if fault.kind == "truncate":
            self._count("truncate")
            return h.reply(200, payload[: len(payload) // 2])
        self._count(200)
        return h.reply(200, payload, fault.headers)


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
