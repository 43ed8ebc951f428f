"""The teacher's API key reaches the server and nothing else: not the results, logs,
Snakemake's metadata or the cache. Without the key the plan still works, and the first job
that calls the teacher stops, naming the variable."""
from pathlib import Path

import pytest
from conftest import copy_project, snakemake
from fault_server import FaultServer

KEY = "sk-herd-test-NEVER-WRITE-4d1e8a"


def config_file(tmp_path: Path, base_url: str) -> Path:
    cfg = tmp_path / "openai.yaml"
    cfg.write_text(
        "teacher:\n  backend: openai\n  model: gpt-4o-mini\n"
        f"  base_url: {base_url}\n  api_key_env: HERD_TEST_KEY\n  max_retries: 1\n"
        "instructions:\n  example_guided: {prompts: 2, shards: 1}\n  topic_guided: {prompts: 2, shards: 1}\n"
        # the fault server's answers hold no instruction: this test is about the key, not the parse
        "  max_unparsable_fraction: 1.0\n")
    return cfg


def test_key_is_sent_but_never_written(tmp_path):
    project = copy_project(tmp_path)
    with FaultServer(api_key=KEY) as server:
        cfg = config_file(tmp_path, server.base_url)
        proc = snakemake(project, "results/instructions/example/0.jsonl", "results/instructions/topic/0.jsonl",
                         "results/plan/plan.txt", "--configfile", str(cfg), env={"HERD_TEST_KEY": KEY})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.total == 4 and set(server.auth) == {f"Bearer {KEY}"}
    assert "gpt-4o-mini" in (project / "results/plan/plan.txt").read_text()
    assert "USD" in proc.stderr  # the plan is printed before a paid run
    written = [p for p in project.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written) and any(".snakemake" in p.parts for p in written)
    leaks = [p for p in written if KEY.encode() in p.read_bytes()]
    assert leaks == []
    assert KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("value", [None, ""])
def test_missing_or_empty_key_plans_then_fails_in_the_first_teacher_job(tmp_path, monkeypatch, value):
    project = copy_project(tmp_path)
    if value is None:
        monkeypatch.delenv("HERD_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("HERD_TEST_KEY", value)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # another variable's key: never printed or written
    cfg = config_file(tmp_path, "http://127.0.0.1:9/v1")
    plan = snakemake(project, "results/plan/plan.txt", "--configfile", str(cfg))
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "teacher.api_key_env: the environment variable HERD_TEST_KEY is not set" in plan.stderr
    assert (project / "results/plan/plan.txt").is_file()
    proc = snakemake(project, "results/instructions/example/0.jsonl", "--configfile", str(cfg))
    assert proc.returncode != 0
    assert "Error in rule instructions" in proc.stdout + proc.stderr
    log = (project / "logs/instructions/example/0.log").read_text()
    assert "teacher.api_key_env: the environment variable HERD_TEST_KEY is not set" in log
    assert not (project / "results/instructions/example/0.jsonl").exists()
    assert KEY not in plan.stdout + plan.stderr + proc.stdout + proc.stderr
    assert [p for p in project.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()] == []
