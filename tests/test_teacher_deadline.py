"""A teacher that accepts connections and never answers: the request deadline ends the wait,
and every retry is in the log with its cause while it happens."""
import logging
import re
import time
from pathlib import Path

import yaml
from fault_server import HANG, FaultServer, requests_for, status
from fault_server import fault_server as serve  # noqa: F401  (a fixture: starts fault servers)

from herd.config import validate
from herd.teacher import make_teacher
from herd.teacher.openai_chat import OpenAITeacher

ROOT = Path(__file__).resolve().parents[1]


def deadline_teacher(server: FaultServer, cache, **kwargs) -> OpenAITeacher:
    options = {"timeout_s": 0.5, "request_deadline_s": 2.0, "max_retries": 6,
               "backoff_base_s": 0.05, "backoff_max_s": 0.2, **kwargs}
    return OpenAITeacher(server.base_url, "fake-model", None, cache, **options)


def test_a_server_that_never_answers_fails_at_the_deadline(serve, cache, caplog):
    caplog.set_level(logging.INFO, logger="herd")
    server = serve(script=lambda n, content: HANG, hang_s=30)
    teacher = deadline_teacher(server, cache)
    start = time.perf_counter()
    [ans] = teacher.answer(requests_for(["hello?"]))
    elapsed = time.perf_counter() - start

    assert 1.9 < elapsed < 2.8, elapsed  # the deadline, not 7 attempts x 0.5 s (+ backoff)
    assert not ans.ok and ans.error.startswith("deadline: ") and "teacher.request_deadline_s=2" in ans.error
    assert "timeout" in ans.error and len(cache) == 0
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries and all(r.levelno == logging.WARNING for r in retries)
    numbers = [int(re.search(r"attempt (\d+) of 7 failed \(timeout: no answer within", r.getMessage()).group(1))
               for r in retries]
    assert numbers == list(range(1, len(numbers) + 1))
    assert server.total == len(numbers) + 1 < 7  # every attempt that was sent, each logged but the last
    assert teacher.stats["retries"] == len(numbers) and teacher.stats["failed"] == 1
    final = [r for r in caplog.records if "failed: deadline:" in r.getMessage()]
    assert len(final) == 1 and final[0].levelno == logging.WARNING


def test_a_wait_past_the_deadline_fails_now(serve, cache, caplog):
    server = serve(script={"busy": [status(503, retry_after=30)]})
    start = time.perf_counter()
    [ans] = deadline_teacher(server, cache).answer(requests_for(["busy"]))
    assert time.perf_counter() - start < 1.0  # not after the 30 s the server asked for
    assert ans.error.startswith("deadline: ") and "HTTP 503" in ans.error and server.total == 1


def test_slow_failures_within_the_deadline_still_retry_to_an_answer(serve, cache, caplog):
    caplog.set_level(logging.WARNING, logger="herd")
    server = serve(script={"flaky": [HANG, status(500)]}, hang_s=30)
    [ans] = deadline_teacher(server, cache, request_deadline_s=5.0).answer(requests_for(["flaky"]))
    assert ans.ok and server.total == 3
    causes = [re.search(r"failed \((\w+):", r.getMessage()).group(1)
              for r in caplog.records if "retrying in" in r.getMessage()]
    assert causes == ["timeout", "server_error"]


def with_teacher(tmp_path, **teacher) -> dict:
    """The default run's config with an openai teacher, validated (the schema fills defaults)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["teacher"] = {"backend": "openai", "api_key_env": None, "cache_dir": str(tmp_path), **teacher}
    return validate(config)["teacher"]


def test_the_config_keys_reach_the_teacher(tmp_path):
    teacher = make_teacher(with_teacher(tmp_path, request_deadline_s=42, lease_s=30), {}, None, threads=1)
    assert (teacher.request_deadline_s, teacher.lease_s, teacher.timeout_s) == (42, 30, 300)
    defaults = with_teacher(tmp_path)
    assert (defaults["request_deadline_s"], defaults["lease_s"]) == (900, 120)
