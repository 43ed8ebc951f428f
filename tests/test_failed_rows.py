"""Teacher requests that fail (within responses.max_failed_fraction) are counted in the dataset
card and stats.json, and every new `snakemake` invocation retries them until they succeed.

The workflow test runs the real rules up to results/dataset/train.jsonl against an
OpenAI-compatible fault-injecting server on loopback: it writes a few instructions when asked
to generate, answers everything else, and fails chosen requests with HTTP 400 while told to.
"""
import json

import pytest
from conftest import copy_project, snakemake
from fault_server import FaultServer, status

from herd.prompts import GENERATION_SYSTEM
from herd.retry import retry_token

GENERATED = [
    "Name three rivers that flow through Central Europe.",
    "How does compound interest differ from simple interest?",
    "Suggest a healthy breakfast for a busy student before an exam.",
    "Explain why the sky looks blue on a clear afternoon.",
    "Give two tips for learning the vocabulary of a new language.",
    "What causes the seasons on our planet?",
]
REANSWER = [f"Seed task number {i}: tell me something useful about the number {i}." for i in range(3)]
FAIL = {GENERATED[1], REANSWER[2]}
TRUNCATED = GENERATED[2]
TAIL = "Eat oats with fruit, and avoid heavy meals, due to the loss of capital an"


class TeacherServer(FaultServer):
    """Writes GENERATED for a generation prompt; answers TRUNCATED as cut at max_tokens."""

    def _completion(self, body, content):
        out = super()._completion(body, content)
        choice = out["choices"][0]
        if body["messages"][0]["content"] == GENERATION_SYSTEM:
            choice["message"]["content"] = "\n".join(f"<example>{g}</example>" for g in GENERATED)
        elif content == TRUNCATED:
            choice["finish_reason"], choice["message"]["content"] = "length", TAIL
        return out


def test_retry_token(tmp_path):
    path = tmp_path / "0.stats.json"
    assert retry_token(path) == ""  # never ran
    path.write_text(json.dumps({"failed_requests": [], "rerun_token": ""}))
    assert retry_token(path) == ""  # ran clean: the token it ran with, so nothing reruns
    failed = [{"id": "b", "error": "x"}, {"id": "a", "error": "y"}]
    path.write_text(json.dumps({"failed_requests": failed, "rerun_token": ""}))
    first = retry_token(path)
    assert first not in ("", None) and retry_token(path) == first  # stable within an invocation
    path.write_text(json.dumps({"failed_requests": failed[::-1], "rerun_token": ""}))
    assert retry_token(path) == first  # the order of the failures does not matter
    path.write_text(json.dumps({"failed_requests": failed, "rerun_token": first}))  # failed again
    second = retry_token(path)
    assert second not in ("", first)
    path.write_text(json.dumps({"failed_requests": [], "rerun_token": second}))  # the retry worked
    assert retry_token(path) == second
    path.write_text("{not json")
    assert retry_token(path) not in ("", first, second)


def _config(tmp_path, base_url):
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps([{"instruction": t, "input": "", "output": f"Own output {i}."}
                                 for i, t in enumerate(REANSWER)]))
    cfg = tmp_path / "failing.yaml"
    cfg.write_text(f"""\
seed_tasks:
  - {{path: config/data/seed_tasks.jsonl, licence: Apache-2.0}}
  - {{path: {seeds}, format: alpaca, use: reanswer, licence: CC BY-NC 4.0}}
  - {{path: {seeds}, format: alpaca, use: passthrough, limit: 2, licence: CC BY-NC 4.0}}
teacher:
  backend: openai
  model: fake-model
  base_url: {base_url}
  api_key_env: null
  max_retries: 0
  prices: {{fake-model: {{prompt: 0, completion: 0}}}}
instructions:
  example_guided: {{prompts: 1, shards: 1}}
  topic_guided: {{prompts: 0, shards: 1}}
responses:
  shards: 1
  max_failed_fraction: 0.5
dataset:
  validation_fraction: 0.2
""")
    return cfg


def _dataset_rows(project):
    return [json.loads(line) for split in ("train", "validation")
            for line in (project / f"results/dataset/{split}.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_failed_requests_are_counted_then_retried_by_the_next_invocation(tmp_path):
    project = copy_project(tmp_path)
    failing = set(FAIL)
    server = TeacherServer(script=lambda n, content: status(400) if content in failing else None)
    with server:
        cfg = _config(tmp_path, server.base_url)

        def run(*args):
            proc = snakemake(project, "results/dataset/train.jsonl", "--configfile", str(cfg), *args)
            assert proc.returncode == 0, proc.stderr[-4000:]
            return proc.stdout + proc.stderr

        run()
        kept = [json.loads(line) for line in (project / "results/filter/instructions.jsonl").read_text().splitlines()]
        reanswer = [json.loads(line) for line in (project / "results/seed_rows/reanswer.jsonl").read_text().splitlines()]
        assert {r["instruction"] for r in kept} == set(GENERATED)
        ids = {r["instruction"]: r["id"] for r in kept + reanswer}
        stats = json.loads((project / "results/dataset/stats.json").read_text())
        assert stats["failed"] == 2
        assert [(f["id"], f["shard"]) for f in stats["failed_requests"]] == sorted((ids[t], 0) for t in FAIL)
        assert all("HTTP 400" in f["error"] for f in stats["failed_requests"])
        assert stats["dropped"] == {"truncated_response": 1}
        rows = _dataset_rows(project)
        assert {r["instruction"] for r in rows} & (FAIL | {TRUNCATED}) == set()
        assert len({r["id"] for r in rows}) == len(rows) == 4 + 2 + 2  # generated, re-answered, passed through
        card = (project / "results/dataset/README.md").read_text()
        assert "| failed teacher request | 2 |" in card and "| truncated_response | 1 |" in card
        assert f"{ids[TRUNCATED]}`: \"...{TAIL[-60:].lstrip()}\"" in card
        assert "Licences that apply to the rows: Apache-2.0 (4 rows), CC BY-NC 4.0 (4 rows)." in card
        assert "| reanswer | self_instruct_seed | CC BY-NC 4.0 | 2 |" in card

        # the same failures again: the next invocation still retries them (only them)
        sent = server.total
        out = run()
        assert "rule responses" in out and server.total - sent == 2
        assert all(server.by_content[t] == 2 for t in FAIL)
        assert json.loads((project / "results/dataset/stats.json").read_text())["failed"] == 2

        # a healthy teacher: the shard reruns, sends only the failed requests, the rows arrive
        failing.clear()
        sent = server.total
        run()
        assert server.total - sent == 2 and all(server.by_content[t] == 3 for t in FAIL)
        assert all(n == 1 for t, n in server.by_content.items() if t in GENERATED and t not in FAIL)
        shard = json.loads((project / "results/responses/0.stats.json").read_text())
        assert shard["failed"] == 0 and shard["teacher"]["generated"] == 2
        stats = json.loads((project / "results/dataset/stats.json").read_text())
        assert stats["failed"] == 0 and stats["failed_requests"] == []
        assert FAIL <= {r["instruction"] for r in _dataset_rows(project)}
        card = (project / "results/dataset/README.md").read_text()
        assert "| failed teacher request | 0 |" in card

        # nothing left to retry: nothing reruns
        sent = server.total
        assert "Nothing to be done" in run("--dry-run")
        assert "Nothing to be done" in run()
        assert server.total == sent


@pytest.mark.slow
def test_failed_generation_prompts_are_retried_by_the_next_invocation(tmp_path):
    """The instruction shards tolerate failed prompts too (instructions.max_failed_fraction); the
    shard's stats list them and the next invocation reruns it, sending only those prompts."""
    project = copy_project(tmp_path)
    failed: list[str] = []

    def script(n, content):  # the first generation prompt the server sees fails, once
        if "<example>" in content and not failed:
            failed.append(content)
            return status(400)
        return None

    server = TeacherServer(script=script)
    with server:
        cfg = _config(tmp_path, server.base_url)
        cfg.write_text(cfg.read_text().replace("example_guided: {prompts: 1, shards: 1}",
                                               "example_guided: {prompts: 2, shards: 1}\n  max_failed_fraction: 0.5"))
        target = "results/instructions/example/0.jsonl"
        proc = snakemake(project, target, "--configfile", str(cfg))
        assert proc.returncode == 0, proc.stderr[-4000:]
        stats = json.loads((project / "results/instructions/example/0.stats.json").read_text())
        assert len(stats["failed_requests"]) == 1 and "HTTP 400" in stats["failed_requests"][0]["error"]
        sent = server.total
        proc = snakemake(project, target, "--configfile", str(cfg))
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert server.total - sent == 1  # only the failed prompt; the other answer came from the cache
        stats = json.loads((project / "results/instructions/example/0.stats.json").read_text())
        assert stats["failed_requests"] == [] and stats["teacher"]["cached"] == 1
        proc = snakemake(project, target, "--configfile", str(cfg), "--dry-run")
        assert "Nothing to be done" in proc.stdout + proc.stderr
