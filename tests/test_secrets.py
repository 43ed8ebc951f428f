"""The teacher's API key reaches the server and nothing else: not the results, logs,
Snakemake's metadata or the cache. A missing key stops the run before any job."""
from pathlib import Path

import pytest

from fault_server import FaultServer

from conftest import copy_project, snakemake

KEY = "sk-herd-test-NEVER-WRITE-4d1e8a"


def config_file(tmp_path: Path, base_url: str) -> Path:
    cfg = tmp_path / "openai.yaml"
    cfg.write_text(
        "teacher:\n  backend: openai\n  model: gpt-4o-mini\n"
        f"  base_url: {base_url}\n  api_key_env: HERD_TEST_KEY\n  max_retries: 1\n"
        "instructions:\n  example_guided: {prompts: 2, shards: 1}\n  topic_guided: {prompts: 2, shards: 1}\n")
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
def test_missing_or_empty_key_stops_before_any_job(tmp_path, monkeypatch, value):
    project = copy_project(tmp_path)
    if value is None:
        monkeypatch.delenv("HERD_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("HERD_TEST_KEY", value)
    proc = snakemake(project, "results/instructions/example/0.jsonl", "--configfile",
                     str(config_file(tmp_path, "http://127.0.0.1:9/v1")))
    assert proc.returncode != 0
    assert "HERD_TEST_KEY" in proc.stdout + proc.stderr
    assert not (project / "results").exists()
