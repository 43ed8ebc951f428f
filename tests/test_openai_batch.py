"""The Batch API teacher against the local fault server (fast: no model, loopback only)."""

import json
import logging
import math

import pytest
from fault_server import (  # noqa: F401
    CLOSE,
    FaultServer,
    expected_answer,
    fault_server,
    requests_for,
    status,
)

from herd.io import read_json
from herd.teacher import ResponseCache, openai_batch, request_key
from herd.teacher.batch_jsonl import request_line
from herd.teacher.openai_batch import (
    BatchError,
    BatchesPending,
    OpenAIBatchTeacher,
    split_lines,
)
from herd.teacher.openai_chat import OpenAITeacher

KEY = "sk-test-DO-NOT-LEAK-batch-4e1d"
WRONG_KEY = "sk-wrong-ALSO-SECRET-batch-9a0b"


class Killed(Exception):
    """Stands for the process being killed at a chosen point."""


@pytest.fixture
def state_path(tmp_path):
    return tmp_path / "cache" / "batches" / "responses-0.json"


def make_teacher(server: FaultServer, cache: ResponseCache, state_path, **kwargs) -> OpenAIBatchTeacher:
    options = {"poll_interval_s": 0.01, "timeout_s": 2.0, "max_retries": 3,
               "backoff_base_s": 0.01, "backoff_max_s": 0.05, **kwargs}
    api_key = options.pop("api_key", KEY)
    return OpenAIBatchTeacher(server.base_url, "fake-model", api_key, cache, state_path, **options)


def assert_answered(answers, contents):
    assert [a.error for a in answers] == [None] * len(contents)
    assert [a.text for a in answers] == [expected_answer(c) for c in contents]


def sent_counts(server: FaultServer) -> tuple:
    return server.files_uploaded, server.batches_created, server.polls, server.downloads


def test_full_flow_answers_in_order_and_shares_the_cache(fault_server, cache, state_path):
    server = fault_server()
    contents = [f"question {i}" for i in range(6)] + ["question 0"]  # a repeat is sent once
    requests = requests_for(contents)
    teacher = make_teacher(server, cache, state_path)
    answers = teacher.answer(requests)
    assert_answered(answers, contents)
    assert (answers[0].finish_reason, answers[0].prompt_tokens, answers[0].completion_tokens) == ("stop", 2, 1)
    # the repeat was sent once: it counts (and is billed) as cached
    assert teacher.stats | {"seconds": 0} == {
        "requests": 7, "cached": 1, "generated": 6, "failed": 0, "retries": 0, "batches": 1,
        "prompt_tokens": 14, "completion_tokens": 7, "seconds": 0}
    assert len(cache) == 6 and set(server.lines_by_content.values()) == {1}
    assert (server.files_uploaded, server.batches_created, server.polls) == (1, 1, 2)

    lines = [json.loads(x) for x in server.files["file-000001"].decode().splitlines()]
    assert lines[0] == {"custom_id": request_key("openai", "fake-model", requests[0]), "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {"model": "fake-model", "messages": requests[0].messages, "temperature": 0.5,
                                 "top_p": 0.9, "max_tokens": 16, "seed": 7}}
    state = read_json(state_path)
    assert state["pending"] == []
    assert [(f["status"], f["requests"], f["answered"], f["failed"]) for f in state["finished"]] == \
        [("completed", 6, 6, 0)]

    before = sent_counts(server)
    again = make_teacher(server, cache, state_path)
    assert_answered(again.answer(requests), contents)
    assert sent_counts(server) == before and again.stats["cached"] == 7
    chat = OpenAITeacher(server.base_url, "fake-model", KEY, cache)  # the other mode: same keys
    assert_answered(chat.answer(requests), contents)
    assert server.total == 0


@pytest.mark.parametrize("limit", ["count", "bytes"])
def test_input_is_split_into_files(fault_server, cache, state_path, limit):
    server = fault_server()
    contents = [f"q{i:02d}" for i in range(8)]  # equal lengths, so equal line sizes
    requests = requests_for(contents)
    probe = make_teacher(server, cache, state_path)
    line_bytes = len(request_line(request_key("openai", "fake-model", requests[0]), probe._body(requests[0])))
    if limit == "count":
        teacher, per_file = make_teacher(server, cache, state_path, max_requests_per_file=3), 3
    else:
        teacher, per_file = make_teacher(server, cache, state_path, max_bytes_per_file=2 * line_bytes + 1), 2
    answers = teacher.answer(requests)
    assert_answered(answers, contents)
    files = math.ceil(len(contents) / per_file)
    assert (server.files_uploaded, server.batches_created, teacher.stats["batches"]) == (files, files, files)
    assert set(server.lines_by_content.values()) == {1} and len(cache) == 8
    assert [f["requests"] for f in read_json(state_path)["finished"]] == [per_file] * (files - 1) + [8 % per_file or per_file]


def test_split_lines():
    lines = [(str(i), b"x" * n) for i, n in enumerate([3, 3, 3, 5, 1])]
    parts = split_lines(lines, max_requests=2, max_bytes=6)
    assert [[k for k, _ in part] for part in parts] == [["0", "1"], ["2"], ["3", "4"]]
    assert split_lines([], 2, 6) == []
    with pytest.raises(ValueError, match="max_bytes_per_file=4"):
        split_lines(lines, max_requests=2, max_bytes=4)


def test_wait_false_raises_then_collects_without_resending(fault_server, cache, state_path):
    server = fault_server(batch_polls=2)
    first, second = ["a1", "a2"], ["b1", "b2", "b3"]
    with pytest.raises(BatchesPending, match="rerun to collect") as pending:
        make_teacher(server, cache, state_path, wait=False).answer(requests_for(first))
    assert list(pending.value.running) == ["batch_000002"] and "in_progress 0/2" in str(pending.value)
    assert len(cache) == 0 and read_json(state_path)["pending"][0]["status"] == "submitted"

    # the next call finishes the first batch (cached before raising) and submits the new requests
    with pytest.raises(BatchesPending) as pending:
        make_teacher(server, cache, state_path, wait=False).answer(requests_for(first + second))
    assert len(pending.value.running) == 1 and "batch_000002" not in pending.value.running
    assert len(cache) == 2

    teacher = make_teacher(server, cache, state_path, wait=False)
    answers = teacher.answer(requests_for(first + second))
    assert_answered(answers, first + second)
    assert (teacher.stats["cached"], teacher.stats["generated"]) == (2, 3)
    assert (server.files_uploaded, server.batches_created) == (2, 2)
    assert set(server.lines_by_content.values()) == {1}
    assert read_json(state_path)["pending"] == []


async def _killed(*args, **kwargs):
    raise Killed()


@pytest.mark.parametrize("can_list", [True, False])
def test_kill_between_upload_and_batch_creation(fault_server, cache, state_path, monkeypatch, can_list):
    server = fault_server(batch_faults={} if can_list else {"list": [status(404)]})
    contents = [f"q{i}" for i in range(5)]
    with monkeypatch.context() as m:
        m.setattr(OpenAIBatchTeacher, "_create_batch", _killed)
        with pytest.raises(Killed):
            make_teacher(server, cache, state_path, max_requests_per_file=2).answer(requests_for(contents))
    [entry] = read_json(state_path)["pending"]
    assert (entry["status"], entry["file_id"], entry["batch_id"], entry["requests"]) == \
        ("uploaded", "file-000001", None, 2)
    assert (server.files_uploaded, server.batches_created) == (1, 0)

    answers = make_teacher(server, cache, state_path, max_requests_per_file=2).answer(requests_for(contents))
    assert_answered(answers, contents)
    assert server.batches["batch_000002"]["input_file_id"] == "file-000001"  # the recorded file
    assert (server.files_uploaded, server.batches_created) == (3, 3)  # only the two other files are new
    assert set(server.lines_by_content.values()) == {1}


def test_kill_after_batch_creation_only_polls_on_rerun(fault_server, cache, state_path, monkeypatch):
    server = fault_server()
    contents = ["x", "y", "z"]
    with monkeypatch.context() as m:
        m.setattr(OpenAIBatchTeacher, "_follow", _killed)
        with pytest.raises(Killed):
            make_teacher(server, cache, state_path).answer(requests_for(contents))
    assert read_json(state_path)["pending"][0]["batch_id"] == "batch_000002"
    assert (server.files_uploaded, server.batches_created, server.polls) == (1, 1, 0)

    teacher = make_teacher(server, cache, state_path)
    assert_answered(teacher.answer(requests_for(contents)), contents)
    assert (server.files_uploaded, server.batches_created, server.polls) == (1, 1, 2)
    assert teacher.stats["batches"] == 0 and server.endpoint_calls["list"] == 0


def test_kill_before_the_state_records_a_created_batch(fault_server, cache, state_path, monkeypatch):
    server = fault_server()
    contents = ["x", "y"]
    real_write = openai_batch.write_json

    def write_then_die(path, state):
        if any(e["batch_id"] for e in state["pending"]):
            raise Killed()  # the server made the batch; the state never learns its id
        real_write(path, state)

    with monkeypatch.context() as m:
        m.setattr(openai_batch, "write_json", write_then_die)
        with pytest.raises(Killed):
            make_teacher(server, cache, state_path).answer(requests_for(contents))
    assert read_json(state_path)["pending"][0]["status"] == "uploaded"

    assert_answered(make_teacher(server, cache, state_path).answer(requests_for(contents)), contents)
    assert (server.files_uploaded, server.batches_created, server.endpoint_calls["list"]) == (1, 1, 1)


def test_failed_lines_are_errors_not_cached_and_resent_alone(fault_server, cache, state_path):
    server = fault_server(failing={"bad"})
    contents = ["a", "bad", "b"]
    teacher = make_teacher(server, cache, state_path)
    answers = teacher.answer(requests_for(contents))
    bad = answers[1]
    assert bad.text is None and not bad.ok
    assert bad.error == "batch: HTTP 400: scripted line failure for 'bad'"
    assert answers[0].ok and answers[2].ok and len(cache) == 2
    assert (teacher.stats["generated"], teacher.stats["failed"]) == (2, 1)
    assert read_json(state_path)["finished"][0] | {"finished_at": 0} == {
        "batch_id": "batch_000002", "file_id": "file-000001", "status": "completed",
        "requests": 3, "answered": 2, "failed": 1, "finished_at": 0}

    server.failing.clear()
    assert_answered(make_teacher(server, cache, state_path).answer(requests_for(contents)), contents)
    assert server.lines_by_content == {"a": 1, "bad": 2, "b": 1}


def test_expired_batch_keeps_partial_results_and_resends_the_rest(fault_server, cache, state_path):
    server = fault_server(batch_end="expired", batch_done=2)
    contents = [f"q{i}" for i in range(5)]
    answers = make_teacher(server, cache, state_path).answer(requests_for(contents))
    assert_answered(answers[:2], contents[:2])
    assert all(a.text is None and a.error.startswith("batch: batch_expired: ") for a in answers[2:])
    assert len(cache) == 2 and read_json(state_path)["pending"] == []

    server.batch_end = "completed"
    assert_answered(make_teacher(server, cache, state_path).answer(requests_for(contents)), contents)
    assert server.lines_by_content == {"q0": 1, "q1": 1, "q2": 2, "q3": 2, "q4": 2}


def test_failed_batch_releases_every_request(fault_server, cache, state_path):
    server = fault_server(batch_end="failed")
    answers = make_teacher(server, cache, state_path).answer(requests_for(["a", "b"]))
    assert [a.error for a in answers] == [
        "batch: batch batch_000002 ended 'failed' without a result for this request: scripted batch failure"] * 2
    server.batch_end = "completed"
    assert_answered(make_teacher(server, cache, state_path).answer(requests_for(["a", "b"])), ["a", "b"])
    assert server.lines_by_content == {"a": 2, "b": 2}


def test_http_faults_on_batch_endpoints_are_retried(fault_server, cache, state_path):
    server = fault_server(batch_faults={"upload": [status(500)], "create": [status(429, retry_after=0)],
                                        "poll": [status(503)], "content": [CLOSE]})
    teacher = make_teacher(server, cache, state_path)
    assert_answered(teacher.answer(requests_for(["a", "b"])), ["a", "b"])
    assert teacher.stats["retries"] == 4
    assert (server.files_uploaded, server.batches_created) == (1, 1)


def test_api_key_is_never_written(fault_server, cache, state_path, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # everything, httpx and httpcore included
    server = fault_server(api_key=KEY, failing={"bad"}, batch_faults={"poll": [status(500)]})
    teacher = make_teacher(server, cache, state_path)
    answers = teacher.answer(requests_for(["good", "bad"]))
    assert [a.ok for a in answers] == [True, False]
    with pytest.raises(BatchesPending) as pending:
        make_teacher(server, cache, state_path, wait=False).answer(requests_for(["later"]))
    with pytest.raises(BatchError, match="auth: HTTP 401") as refused:  # the server echoes the wrong key
        make_teacher(server, cache, state_path, api_key=WRONG_KEY).answer(requests_for(["other"]))
    assert server.files_uploaded == 2  # the server checks the key: it was sent, and accepted

    written = [caplog.text, capfd.readouterr().err, repr(teacher), json.dumps(teacher.stats),
               str(pending.value), str(refused.value), *(repr(a) for a in answers)]
    written += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert "HTTP Request: POST" in caplog.text and state_path.exists()
    for text in written:
        assert KEY not in text and WRONG_KEY not in text
