"""Seed and topic files are checked on reading: each bad file or record gives a message with
the file, the line or record, and the config key (seed_tasks[i] or topics) to fix."""
import json
import re
from pathlib import Path

import pytest
from conftest import copy_project, snakemake

from herd.config import validate
from herd.sources import SourceError, load_seed_tasks, load_spec, load_topics, seed_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PROJECT = Path(__file__).resolve().parents[1]
PROJECT_SEEDS = str(PROJECT / "config/data/seed_tasks.jsonl")
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")
MB = 1 << 20


def seed_config(*entries: dict) -> list[dict]:
    """Validated seed_tasks: the project's seeds as entry 0, then `entries`."""
    return validate({"seed_tasks": [{"path": PROJECT_SEEDS}, *entries]})["seed_tasks"]


def alpaca_file(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_limits_have_defaults_in_the_schema():
    specs = seed_config()
    assert specs[0]["max_chars"] == {"instruction": 32000, "input": 32000, "output": 32000}
    assert validate({})["topics"]["max_chars"] == 255


def test_a_huge_seed_is_rejected_with_file_record_and_key(tmp_path):
    big = alpaca_file(tmp_path / "big.json", [
        {"instruction": "Name a planet.", "input": "", "output": "Mars"},
        {"instruction": "x" * MB, "input": "", "output": "y"},
    ])
    specs = seed_config({"path": str(big), "format": "alpaca", "source": "alpaca", "use": "examples"})
    expected = (rf"seed_tasks\[1\]: {re.escape(str(big))}: record 2: the instruction has 1,048,576 characters, "
                r"over seed_tasks\[1\]\.max_chars\.instruction \(32,000\)")
    with pytest.raises(SourceError, match=expected):
        load_spec(specs[1], 1)
    with pytest.raises(SourceError, match=expected):  # what the instructions, filter and diversity jobs call
        load_seed_tasks(specs)
    # as a seed to re-answer it never reaches the dataset
    specs = seed_config({"path": str(big), "format": "alpaca", "source": "alpaca", "use": "reanswer"})
    with pytest.raises(SourceError, match=r"record 2: the instruction has 1,048,576 characters, over seed_tasks.*"
                                          r"max_chars\.instruction"):
        seed_rows(specs, "reanswer")
    # only the records in use are checked: `limit` stops before the huge one
    specs = seed_config({"path": str(big), "format": "alpaca", "source": "alpaca", "use": "reanswer", "limit": 1})
    assert [s.instruction for s in load_spec(specs[1], 1)] == ["Name a planet."]


def test_each_field_has_its_own_configurable_limit(tmp_path):
    f = tmp_path / "seeds.jsonl"
    f.write_text(json.dumps({"instruction": "Summarize the text.", "instances": [
        {"input": "A short text about tides.", "output": "Tides follow the moon, which pulls the sea."}]}) + "\n")
    entry = {"path": str(f), "format": "selfinstruct", "source": "s"}
    assert len(load_spec(seed_config(entry)[1], 1)) == 1
    specs = seed_config({**entry, "max_chars": {"output": 20}})
    assert specs[1]["max_chars"] == {"instruction": 32000, "input": 32000, "output": 20}
    with pytest.raises(SourceError, match=rf"seed_tasks\[1\]: {re.escape(str(f))}:1: record 1: the output has 43 "
                                          r"characters, over seed_tasks\[1\]\.max_chars\.output \(20\)"):
        load_spec(specs[1], 1)


def test_hf_rows_have_the_same_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "p3"
    d.mkdir()
    rows = [{"inputs": "Question: what is 2 + 2?", "targets": "4"}, {"inputs": "Passage: " + "w " * 40000, "targets": "x"}]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    specs = seed_config({"path": str(d), "format": "hf", "source": "p3", "use": "reanswer",
                         "columns": {"instruction": "inputs", "output": "targets"}})
    with pytest.raises(SourceError, match=rf"seed_tasks\[1\]: {re.escape(str(d))} \[train\]: record 2: the instruction "
                                          r"has 80,009 characters, over seed_tasks\[1\]\.max_chars\.instruction"):
        load_spec(specs[1], 1)


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    f = tmp_path / "latin1.jsonl"
    lines = [json.dumps({"instruction": "Name a colour.", "instances": [{"input": "", "output": "red"}]}),
             json.dumps({"instruction": "Name a fruit.", "instances": [{"input": "", "output": "pear"}]})]
    f.write_bytes((lines[0] + "\n" + lines[1] + "\n").encode() + '{"instruction": "Résumé"}\n'.encode("latin-1"))
    specs = seed_config({"path": str(f), "format": "selfinstruct", "source": "s"})
    with pytest.raises(SourceError, match=rf"seed_tasks\[1\]: {re.escape(str(f))}:3: not UTF-8 text \(byte 0xe9"):
        load_spec(specs[1], 1)


@needs_shared
def test_alpaca_list_declared_selfinstruct_says_which_format(tmp_path):
    alpaca = SHARED / "seed/alpaca_5000.json"
    specs = seed_config({"path": str(alpaca), "format": "selfinstruct", "source": "a"})
    with pytest.raises(SourceError, match=r"seed_tasks\[1\]: .*alpaca_5000\.json:1: .*looks like an Alpaca JSON "
                                          r"list.*set seed_tasks\[1\]\.format: alpaca"):
        load_seed_tasks(specs)
    # and the reverse: JSON Lines declared alpaca
    jsonl = SHARED / "seed/selfinstruct_seed_tasks.jsonl"
    specs = seed_config({"path": str(jsonl), "format": "alpaca", "source": "a"})
    with pytest.raises(SourceError, match=r"seed_tasks\[1\]: .*selfinstruct_seed_tasks\.jsonl:2: not valid JSON "
                                          r"\(Extra data\); it looks like JSON Lines.*seed_tasks\[1\]\.format"):
        load_spec(specs[1], 1)


def test_seed_path_that_is_a_directory(tmp_path):
    (tmp_path / "seeds").mkdir()
    for fmt in ("selfinstruct", "alpaca", "jsonl", "parquet"):
        specs = seed_config({"path": str(tmp_path / "seeds"), "format": fmt, "source": "s"})
        with pytest.raises(SourceError, match=rf"seed_tasks\[1\]: {re.escape(str(tmp_path / 'seeds'))} is a "
                                              r"directory, not a file \(seed_tasks\[1\]\.path\)"):
            load_seed_tasks(specs)


def test_malformed_records_are_named(tmp_path):
    f = tmp_path / "seeds.jsonl"
    f.write_text('{"instruction": "Name a colour.", "instances": {"input": "", "output": "red"}}\n')
    with pytest.raises(SourceError, match=r"seed_tasks\[1\]: .*seeds\.jsonl:1: record 1: 'instances' is a list"):
        load_spec(seed_config({"path": str(f), "source": "s"})[1], 1)
    f.write_text('["Name a colour."]\n')  # an array on a JSONL line: not a record
    with pytest.raises(SourceError, match=r"seeds\.jsonl:1: .*looks like an Alpaca JSON list"):
        load_spec(seed_config({"path": str(f), "source": "s"})[1], 1)
    g = alpaca_file(tmp_path / "a.json", [{"instruction": "Add the numbers.", "input": [2, 3], "output": "5"}])
    with pytest.raises(SourceError, match=r"seed_tasks\[1\]: .*a\.json: record 1: field 'input' is a list, not text"):
        load_spec(seed_config({"path": str(g), "format": "alpaca", "source": "s"})[1], 1)


def test_entries_are_named_by_their_place_in_the_whole_list(tmp_path):
    bad = alpaca_file(tmp_path / "bad.json", [{"instruction": "x" * 50}])
    specs = seed_config({"path": str(bad), "format": "alpaca", "source": "r", "use": "reanswer"},
                        {"path": str(bad), "format": "alpaca", "source": "e", "max_chars": {"instruction": 10}})
    # entry 1 (reanswer) is skipped by the examples' loader; the error names entry 2
    with pytest.raises(SourceError, match=r"seed_tasks\[2\]: .*over seed_tasks\[2\]\.max_chars\.instruction"):
        load_seed_tasks(specs)


# Topics

def test_malformed_topic_json_names_file_and_line(tmp_path):
    f = tmp_path / "topics.json"
    f.write_text('{\n  "Jazz": "Arts",\n  "Tea" "Food"\n}\n')
    with pytest.raises(SourceError, match=rf"topics: {re.escape(str(f))}:3: not valid JSON \(Expecting ':' "
                                          r"delimiter\); topics\.format json_map"):
        load_topics(f, "json_map")
    f.write_text('["Jazz", "Tea"]')
    with pytest.raises(SourceError, match=r"topics: .*object of title -> label, not a list \(topics\.format\)"):
        load_topics(f, "json_map")


def test_topic_files_that_are_no_text_or_too_long(tmp_path):
    (tmp_path / "topics").mkdir()
    with pytest.raises(SourceError, match=r"topics: .*topics is a directory, not a topic file \(topics\.path\)"):
        load_topics(tmp_path / "topics", "text")
    with pytest.raises(SourceError, match=r"topics: topic file not found: .*missing\.txt \(topics\.path\)"):
        load_topics(tmp_path / "missing.txt", "text")
    f = tmp_path / "t.txt"
    f.write_bytes("Jazz\n# comment\nCaf\xe9\n".encode("latin-1"))
    with pytest.raises(SourceError, match=rf"topics: {re.escape(str(f))}:3: not UTF-8 text"):
        load_topics(f, "text")
    f.write_text("Jazz\n" + "x" * MB + "\nTea\n")  # one "word": the max_words filter would keep it
    assert load_topics(f, "text")[0] == "Jazz"  # no limit given
    with pytest.raises(SourceError, match=rf"topics: {re.escape(str(f))}:2: a title of 1,048,576 characters, "
                                          r"over topics\.max_chars \(255\)"):
        load_topics(f, "text", max_chars=255)
    g = tmp_path / "t.json"
    g.write_text(json.dumps({"Jazz": "Arts", "y" * 300: "Bad"}))
    with pytest.raises(SourceError, match=r"topics: .*t\.json: record 2: a title of 300 characters"):
        load_topics(g, "json_map", max_chars=255)


@needs_shared
def test_shared_topics_pass_the_default_limit():
    assert len(load_topics(SHARED / "topics/vital_articles_lvl1-4_en.json", "json_map", max_chars=255)) == 10033


def test_topics_rule_reports_malformed_json(tmp_path):
    """Through Snakemake: the job fails and its log names file, line and key."""
    project = copy_project(tmp_path)
    f = tmp_path / "vital.json"
    f.write_text('{\n  "Jazz": "Arts",\n  "Tea": "Food",\n}\n')
    cfg = tmp_path / "topics.yaml"
    cfg.write_text(f"topics:\n  path: {f}\n  format: json_map\n")
    proc = snakemake(project, "results/topics/topics.txt", "--configfile", str(cfg))
    assert proc.returncode != 0
    log = (project / "logs/topics/topics.log").read_text()
    assert f"topics: {f}:4: not valid JSON" in log, log[-2000:]
    assert not (project / "results/topics/topics.txt").exists()
