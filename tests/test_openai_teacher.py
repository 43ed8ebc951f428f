"""The openai teacher against a local fault-injecting server (fast: no model, loopback only)."""

import json
import logging
import random
import time

import pytest
from fault_server import CLOSE, HANG, TRUNCATE, FaultServer, expected_answer, fault_server, ok, requests_for, status  # noqa: F401

from herd.teacher import ResponseCache, request_key
from herd.teacher.http_errors import parse_duration, retry_after_s
from herd.teacher.openai_chat import OpenAITeacher
from herd.teacher.rate_limits import TokenBucket

KEY = "sk-test-DO-NOT-LEAK-7f3a9c"
WRONG_KEY = "sk-wrong-ALSO-SECRET-1b2c"


def make_teacher(server: FaultServer, cache: ResponseCache, **kwargs) -> OpenAITeacher:
    options = {"max_in_flight": 4, "timeout_s": 2.0, "max_retries": 3,
               "backoff_base_s": 0.01, "backoff_max_s": 0.05, **kwargs}
    api_key = options.pop("api_key", KEY)
    return OpenAITeacher(server.base_url, "fake-model", api_key, cache, **options)


def assert_answered(answers, contents):
    assert [a.error for a in answers] == [None] * len(contents)
    assert [a.text for a in answers] == [expected_answer(c) for c in contents]


def test_answers_keep_request_order_under_random_latency(fault_server, cache):
    rng = random.Random(0)
    server = fault_server(latency=lambda n, content: rng.uniform(0, 0.05))
    contents = [f"question {i}" for i in range(30)]
    teacher = make_teacher(server, cache, max_in_flight=8)
    answers = teacher.answer(requests_for(contents))
    assert_answered(answers, contents)
    assert answers[0].finish_reason == "stop"
    assert (answers[0].prompt_tokens, answers[0].completion_tokens) == (2, 1)
    assert teacher.stats | {"seconds": 0} == {
        "requests": 30, "cached": 0, "generated": 30, "failed": 0, "retries": 0,
        "prompt_tokens": 60, "completion_tokens": 30, "seconds": 0}
    body = server.bodies[0]
    assert body["model"] == "fake-model" and body["messages"][0]["role"] == "system"
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.5, 0.9, 16, 7)
    assert set(server.auth) == {f"Bearer {KEY}"}


def test_cached_requests_are_never_resent(fault_server, cache, tmp_path):
    server = fault_server()
    first = [f"q{i}" for i in range(5)]
    make_teacher(server, cache).answer(requests_for(first))
    assert server.total == 5 and len(cache) == 5

    both = first + ["new1", "new2", "new3"]
    teacher = make_teacher(server, cache)
    answers = teacher.answer(requests_for(both))
    assert_answered(answers, both)
    assert server.total == 8 and set(server.by_content.values()) == {1}
    assert [a.cached for a in answers] == [True] * 5 + [False] * 3
    assert (teacher.stats["cached"], teacher.stats["generated"]) == (5, 3)

    reopened = ResponseCache(tmp_path / "cache" / "teacher.sqlite")  # as a rerun would
    make_teacher(server, reopened).answer(requests_for(both))
    reopened.close()
    assert server.total == 8


FAULTS = {  # fault -> the kind of failure the teacher should see
    "429": (status(429), "rate_limited"), "500": (status(500), "server_error"),
    "502": (status(502), "server_error"), "503": (status(503), "server_error"),
    "hang": (HANG, "timeout"), "truncate": (TRUNCATE, "bad_response"), "close": (CLOSE, "connection"),
}


@pytest.mark.parametrize("name", FAULTS)
def test_each_fault_is_retried_until_answered(fault_server, cache, name):
    fault, kind = FAULTS[name]
    server = fault_server(script={"flaky": [fault, fault]})
    contents = ["a", "flaky", "b", "c"]
    requests = requests_for(contents)
    events = []
    teacher = make_teacher(server, cache, timeout_s=0.3, ledger=events.append)
    answers = teacher.answer(requests)
    assert_answered(answers, contents)
    assert server.by_content == {"a": 1, "flaky": 3, "b": 1, "c": 1}
    assert teacher.stats["retries"] == 2
    flaky_key = request_key("openai", "fake-model", requests[1])
    assert [e["outcome"] for e in events if e["request_key"] == flaky_key] == [kind, kind, "ok"]


def test_retry_after_is_honoured(fault_server, cache):
    server = fault_server(script={"q": [status(429, retry_after=1)]})
    start = time.perf_counter()
    answers = make_teacher(server, cache).answer(requests_for(["q"]))
    assert time.perf_counter() - start >= 1.0
    assert answers[0].ok and server.by_status == {429: 1, 200: 1}


def test_rate_limit_headers_pause_new_sends(fault_server, cache):
    spent = ok({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    server = fault_server(script=[spent])
    start = time.perf_counter()
    answers = make_teacher(server, cache, max_in_flight=1).answer(requests_for(["q1", "q2"]))
    assert time.perf_counter() - start >= 1.0
    assert all(a.ok for a in answers)


def test_requests_per_minute_paces_sends(fault_server, cache):
    server = fault_server()
    start = time.perf_counter()
    answers = make_teacher(server, cache, requests_per_minute=120).answer(requests_for(list("abcde")))
    assert time.perf_counter() - start >= 0.95  # 2 per second after a one-second burst
    assert all(a.ok for a in answers)


def test_token_bucket_and_header_parsing():
    per_second = TokenBucket(60)
    assert [per_second.reserve(1, now=0.0) for _ in range(4)] == [0.0, 0.0, 1.0, 2.0]
    tokens = TokenBucket(6000)  # 100 tokens per second
    assert tokens.reserve(500, now=0.0) == 0.0 and tokens.reserve(100, now=0.0) == 4.0
    assert [parse_duration(v) for v in ("12", "1.5s", "6m0s", "20ms", "1h2m", "soon", None)] == \
        [12.0, 1.5, 360.0, 0.02, 3720.0, None, None]
    import httpx
    assert retry_after_s(httpx.Headers({"Retry-After": "2"})) == 2.0
    assert retry_after_s(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_s(httpx.Headers({})) is None


def test_persistent_failure_is_an_error_and_others_succeed(fault_server, cache):
    server = fault_server(script={"bad": [status(500)] * 10})
    teacher = make_teacher(server, cache, max_retries=2)
    answers = teacher.answer(requests_for(["x", "bad", "y"]))
    bad = answers[1]
    assert bad.text is None and not bad.ok
    assert bad.error.startswith("server_error: HTTP 500") and "gave up after 3 attempts" in bad.error
    assert answers[0].ok and answers[2].ok
    assert server.by_content["bad"] == 3
    assert (teacher.stats["generated"], teacher.stats["failed"]) == (2, 1)
    assert len(cache) == 2  # failures are not cached: a rerun asks again
    make_teacher(server, cache, max_retries=0).answer(requests_for(["x", "bad", "y"]))
    assert server.by_content == {"x": 1, "bad": 4, "y": 1}


def test_401_fails_fast_without_showing_the_key(fault_server, cache):
    server = fault_server(api_key=KEY)  # echoes the wrong key it gets, like a careless server
    answers = make_teacher(server, cache, api_key=WRONG_KEY).answer(requests_for(["a", "b"]))
    assert server.total == 2  # no retries
    for a in answers:
        assert a.text is None and a.error.startswith("auth: HTTP 401")
        assert "API key" in a.error and WRONG_KEY not in a.error and "rejected" in a.error
    answers = make_teacher(server, cache, api_key=None).answer(requests_for(["a"]))
    assert "no API key was sent" in answers[0].error and server.auth[-1] is None


def test_400_fails_fast(fault_server, cache):
    server = fault_server(script={"q": [status(400)] * 5})
    answers = make_teacher(server, cache).answer(requests_for(["q"]))
    assert answers[0].error == "client_error: HTTP 400: scripted 400; you sent Bearer [REDACTED]"
    assert server.total == 1


def test_concurrency_is_bounded_and_real(fault_server, cache):
    server = fault_server(latency=0.2)
    contents = [f"q{i}" for i in range(20)]
    start = time.perf_counter()
    answers = make_teacher(server, cache, max_in_flight=10).answer(requests_for(contents))
    elapsed = time.perf_counter() - start
    assert_answered(answers, contents)
    assert 1 < server.max_in_flight <= 10
    assert elapsed < 20 * 0.2 / 2  # serial would take 4 s; two waves take about 0.4 s

    narrow = fault_server(latency=0.02)
    make_teacher(narrow, cache, max_in_flight=3).answer(requests_for([f"n{i}" for i in range(12)]))
    assert narrow.max_in_flight <= 3


def test_api_key_is_never_written(fault_server, cache, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # everything, httpx and httpcore included
    server = fault_server(api_key=KEY, script={"bad": [status(500)] * 10, "flaky": [TRUNCATE, CLOSE]})
    events = []
    teacher = make_teacher(server, cache, max_retries=2, ledger=events.append)
    answers = teacher.answer(requests_for(["good", "bad", "flaky"]))
    answers += make_teacher(server, cache, api_key=WRONG_KEY).answer(requests_for(["other"]))
    assert [a.ok for a in answers] == [True, False, True, False]
    assert set(server.auth[:-1]) == {f"Bearer {KEY}"}  # the key was sent...

    written = [caplog.text, capfd.readouterr().err, json.dumps(events), repr(teacher),
               json.dumps(teacher.stats), *(repr(a) for a in answers)]
    written += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert "HTTP Request: POST" in caplog.text and any(p.name == "teacher.sqlite" for p in tmp_path.rglob("*"))
    for text in written:  # ...and written nowhere
        assert KEY not in text and WRONG_KEY not in text
