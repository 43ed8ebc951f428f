"""Generation answers a shard cannot use, and runs without generation.

A shard counts the answers that hold no instruction (unparsable_answers) and fails above
instructions.max_unparsable_fraction, naming itself and showing one answer; a list cut at
max_tokens loses its last item as `truncated`. A run of re-answered seeds only needs no topics
and no generation job. Teachers: an OpenAI-compatible test server (tests/fault_server.py) and the
packaged SmolLM2-135M-Instruct, which cannot follow the generation format.
"""
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import copy_project, snakemake
from fault_server import FaultServer, expected_answer

from herd.config import ConfigError, validate
from herd.instructions import build_requests, generate_shard
from herd.prompts import parse_generation
from herd.sources import load_seed_tasks
from herd.teacher.llamacpp import LlamaCppTeacher
from herd.teacher.openai_chat import OpenAITeacher

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared" / "data"
SEEDS = str(PROJECT / "config/data/seed_tasks.jsonl")
CUT_LIST = "1. Explain how tides work.\n2. Name three prime numbers above 50.\n3. Describe the water cyc"


class AnsweringServer(FaultServer):
    """The fault server with chosen answers: `answer(content)` and `finish_reason` (the plain
    server answers `answer-<hash>`, which holds no instruction)."""

    def __init__(self, answer=None, finish_reason: str = "stop", **kwargs):
        super().__init__(**kwargs)
        self.answer, self.finish_reason = answer, finish_reason

    def _completion(self, body: dict, content: str) -> dict:
        out = super()._completion(body, content)
        if self.answer is not None:
            out["choices"][0]["message"]["content"] = self.answer(content)
        out["choices"][0]["finish_reason"] = self.finish_reason
        return out


def instructions_cfg(**overrides) -> dict:
    cfg = validate({"seed_tasks": [{"path": SEEDS}],
                    "instructions": {"example_guided": {"prompts": 4, "shards": 2}, **overrides}})
    return cfg["instructions"]


@pytest.fixture(scope="module")
def seeds():
    return load_seed_tasks(validate({"seed_tasks": [{"path": SEEDS}]})["seed_tasks"])


def openai_teacher(server: FaultServer, cache) -> OpenAITeacher:
    return OpenAITeacher(server.base_url, "fake-model", None, cache, max_in_flight=2, timeout_s=10, max_retries=0)


def user_message(cfg: dict, seeds, shard: int, i: int = 0) -> str:
    return build_requests("example", seeds, [], cfg, 7, shard)[i][1].messages[-1]["content"]


# Parsing (pure): the finish reason is passed in

def test_cut_untagged_list_loses_its_last_item():
    cut = parse_generation(CUT_LIST, "length")
    assert cut.instructions == ["Explain how tides work.", "Name three prime numbers above 50."]
    assert cut.rejected == {"truncated": 1}
    whole = parse_generation(CUT_LIST, "stop")  # the same text, ended by the model: every item stays
    assert len(whole.instructions) == 3 and not whole.rejected


def test_closed_tags_of_a_cut_answer_stay():
    text = ("<example>Explain how tides work.</example>\n<example>\n1. Name a prime above 50.\n2. Name a noble gas."
            "\n</example>\n<example>Describe the water cyc")
    for reason in ("length", "stop", None):
        result = parse_generation(text, reason)
        assert result.instructions == ["Explain how tides work.", "Name a prime above 50.", "Name a noble gas."]
        assert result.rejected == {"truncated": 1}  # the tag never closed, once


# A shard: an OpenAI-compatible test server as the teacher

def test_unparsable_answers_stop_the_shard_naming_it(cache, seeds):
    cfg = instructions_cfg()
    with FaultServer() as server:
        with pytest.raises(ValueError) as err:
            generate_shard("example", seeds, [], cfg, 7, 1, openai_teacher(server, cache))
        msg = str(err.value)
        assert msg.startswith("instructions/example shard 1: 2 of 2 teacher answers hold no instruction that could "
                              "be parsed, more than instructions.max_unparsable_fraction (50%)"), msg
        first = expected_answer(user_message(cfg, seeds, 1))  # the answer to the shard's first prompt
        assert msg.endswith(f"First such answer: {first!r}")
        # allowed: the shard passes, with nothing, and says why in its stats
        records, stats, _ = generate_shard("example", seeds, [], instructions_cfg(max_unparsable_fraction=1.0),
                                           7, 1, openai_teacher(server, cache))
        assert records == [] and stats["unparsable_answers"] == 2 and stats["instructions"] == 0
        assert stats["rejected_fragments"] == {"prose_line": 2}
        assert server.total == 2  # the second time from the cache


def test_the_shown_answer_is_cut_to_300_characters(cache, seeds):
    prose = "I am sorry, but I cannot write new tasks in that format. " * 20
    with (AnsweringServer(answer=lambda content: prose) as server,
          pytest.raises(ValueError, match=r"^instructions/example shard 0: 2 of 2 teacher answers") as err):
        generate_shard("example", seeds, [], instructions_cfg(), 7, 0, openai_teacher(server, cache))
    assert str(err.value).endswith(f"First such answer: {prose[:300] + '...'!r}")
    assert "were cut" not in str(err.value)


def test_a_share_at_the_limit_passes_and_is_counted(cache, seeds):
    cfg = instructions_cfg()
    first = user_message(cfg, seeds, 0)
    with AnsweringServer(answer=lambda content: "No." if content == first else CUT_LIST) as server:
        records, stats, _ = generate_shard("example", seeds, [], cfg, 7, 0, openai_teacher(server, cache))
    assert stats["unparsable_answers"] == 1 and len(records) == 3  # 1 of 2 is not more than 50%


def test_cut_lists_count_their_last_item_as_truncated(cache, seeds):
    cfg = instructions_cfg()
    with AnsweringServer(answer=lambda content: CUT_LIST, finish_reason="length") as server:
        records, stats, _ = generate_shard("example", seeds, [], cfg, 7, 0, openai_teacher(server, cache))
    assert [r["instruction"] for r in records] == ["Explain how tides work.", "Name three prime numbers above 50."] * 2
    assert stats["rejected_fragments"] == {"truncated": 2}
    assert stats["cut_answers"] == 2 and stats["unparsable_answers"] == 0


# A real teacher that cannot follow the format

def test_smollm2_teacher_is_reported_unparsable(smollm2_gguf, cache, seeds):
    """About a minute on 2 busy cores: two prompts of some 400 tokens, 48 tokens answered."""
    cfg = instructions_cfg(per_prompt=5, decoding={"temperature": 1.0, "top_p": 0.95, "max_tokens": 48})
    teacher = LlamaCppTeacher(smollm2_gguf, "smollm2@test", cache, n_ctx=2048, threads=2, parallel=2)
    with pytest.raises(ValueError) as err:
        generate_shard("example", seeds, [], cfg, 7, 1, teacher)
    msg = str(err.value)
    assert re.match(r"instructions/example shard 1: 2 of 2 teacher answers hold no instruction", msg), msg
    assert "; 2 of them were cut at instructions.decoding.max_tokens" in msg
    answers = teacher.answer([req for _, req, _ in build_requests("example", seeds, [], cfg, 7, 1)])
    assert all(a.cached for a in answers)
    text = answers[0].text
    assert msg.endswith(f"First such answer: {text[:300] + ('...' if len(text) > 300 else '')!r}")


# Runs without generation, and the checks before the first job

def reanswer_only(tmp_path: Path, **instructions) -> Path:
    """A copy of the project whose run re-answers Alpaca prompts; the topic file does not exist."""
    project = copy_project(tmp_path)
    cfg = {"seed_tasks": [{"path": str(SHARED / "seed/alpaca_5000.json"), "format": "alpaca",
                           "source": "alpaca", "use": "reanswer", "limit": 3}],
           "topics": {"path": str(tmp_path / "no-such-topics.txt")},
           "instructions": {"example_guided": {"prompts": 0}, "topic_guided": {"prompts": 0}, **instructions}}
    (project / "run.yaml").write_text(yaml.safe_dump(cfg))
    return project


def planned_jobs(stdout: str) -> dict[str, int]:
    """Jobs by rule, from a dry run's job table."""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stdout, re.MULTILINE) if rule != "total"}


needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")


def test_generation_parts_of_a_config():
    from herd.instructions import generation_parts

    assert generation_parts(validate({"seed_tasks": [{"path": SEEDS}]})) == {
        "example": {"prompts": 4, "shards": 1}, "topic": {"prompts": 4, "shards": 1}}
    reanswer = {"path": SEEDS, "use": "reanswer"}
    assert generation_parts(validate({"seed_tasks": [reanswer], "instructions": {
        "example_guided": {"prompts": 0}, "topic_guided": {"prompts": 0}}})) == {}
    with pytest.raises(ConfigError, match=r"instructions\.topic_guided\.prompts = 4 ask for generated instructions, "
                                          r"but no seed_tasks entry has use: examples"):
        generation_parts(validate({"seed_tasks": [reanswer], "instructions": {"example_guided": {"prompts": 0}}}))


@needs_shared
def test_reanswer_only_run_plans_no_generation_or_topics(tmp_path):
    project = reanswer_only(tmp_path)
    proc = snakemake(project, "-n", "results/dataset/train.parquet", "--configfile", "run.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    assert {"seed_rows", "filter", "responses"} <= set(jobs), jobs
    assert "instructions" not in jobs and "topics" not in jobs
    # example-guided only: its shards do not wait for topics either
    (project / "run.yaml").write_text((project / "run.yaml").read_text().replace(
        "use: reanswer", "use: examples"))
    proc = snakemake(project, "-n", "results/filter/instructions.jsonl", "--configfile", "run.yaml",
                     "--config", "instructions={example_guided: {prompts: 2, shards: 2}, topic_guided: {prompts: 0}}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    assert jobs.get("instructions") == 2 and "topics" not in jobs, jobs


@needs_shared
def test_generation_without_example_seeds_stops_before_any_job(tmp_path):
    project = reanswer_only(tmp_path)
    proc = snakemake(project, "-n", "results/dataset/train.parquet", "--configfile", "run.yaml",
                     "--config", "instructions={example_guided: {prompts: 3}, topic_guided: {prompts: 0}}")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert ("config: instructions.example_guided.prompts = 3 ask for generated instructions, but no seed_tasks entry "
            "has use: examples") in out, out[-3000:]
    assert not (project / "logs").exists()


@needs_shared
def test_reanswer_only_run_answers_the_seeds(tmp_path):
    """Through Snakemake with an OpenAI-compatible test server: the filter keeps nothing (no
    shard), the responses are the three re-answered Alpaca prompts."""
    with AnsweringServer(answer=lambda content: f"Answer to: {content[:20]}") as server:
        project = reanswer_only(tmp_path)
        teacher = {"backend": "openai", "model": "fake-model", "base_url": server.base_url, "api_key_env": None,
                   "max_retries": 0}
        (project / "teacher.yaml").write_text(yaml.safe_dump({"teacher": teacher, "responses": {"shards": 1}}))
        proc = snakemake(project, "results/responses/0.jsonl", "--configfile", "run.yaml", "teacher.yaml")
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (project / "results/filter/instructions.jsonl").read_text() == ""
    assert json.loads((project / "results/filter/stats.json").read_text())["input"] == 0
    rows = [json.loads(line) for line in (project / "results/responses/0.jsonl").read_text().splitlines()]
    assert [r["instruction_source"] for r in rows] == ["alpaca"] * 3
    assert all(r["response"].startswith("Answer to: ") for r in rows)
    assert server.total == 3
    assert not (project / "results/instructions").exists() and not (project / "results/topics").exists()


def test_generation_that_loses_every_instruction_still_fails(tmp_path):
    """Through Snakemake: unparsable answers stop the shard (its log shows why); answers whose
    instructions the filters all drop make the filter fail."""
    project = copy_project(tmp_path)
    blacklisted = "1. Draw a map of your town.\n2. Plot a graph of the prices.\n3. Describe this picture in detail."
    answers = {"text": "answer"}
    with AnsweringServer(answer=lambda content: answers["text"]) as server:
        teacher = {"backend": "openai", "model": "fake-model", "base_url": server.base_url, "api_key_env": None,
                   "max_retries": 0}
        (project / "run.yaml").write_text(yaml.safe_dump({"teacher": teacher, "instructions": {
            "example_guided": {"prompts": 2, "shards": 1}, "topic_guided": {"prompts": 0}}}))
        proc = snakemake(project, "results/filter/instructions.jsonl", "--configfile", "run.yaml")
        assert proc.returncode != 0
        log = (project / "logs/instructions/example/0.log").read_text()
        assert "instructions/example shard 0: 2 of 2 teacher answers hold no instruction" in log, log[-3000:]
        assert "First such answer: 'answer'" in log
        assert not (project / "results/instructions/example/0.jsonl").exists()
        # a new teacher model (a new cache identity) whose instructions the filters all drop
        answers["text"] = blacklisted
        (project / "run.yaml").write_text((project / "run.yaml").read_text().replace("fake-model", "fake-model-2"))
        proc = snakemake(project, "results/filter/instructions.jsonl", "--configfile", "run.yaml")
        assert proc.returncode != 0
    stats = json.loads((project / "results/instructions/example/0.stats.json").read_text())
    assert stats["instructions"] == 6 and stats["unparsable_answers"] == 0
    log = (project / "logs/filter/filter.log").read_text()
    assert "filter: none of 6 instructions generated by 1 shards (results/instructions/) survived" in log, log[-3000:]
