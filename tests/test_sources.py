import json
from pathlib import Path

import pytest

from herd.sources import SourceError, filter_topics, load_seeds, load_topics

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PROJECT = Path(__file__).resolve().parents[1]


def test_project_seed_tasks_are_selfinstruct_and_diverse():
    seeds = load_seeds(PROJECT / "config/data/seed_tasks.jsonl", "selfinstruct", "self_instruct_seed")
    assert len(seeds) >= 40
    assert len({s.instruction for s in seeds}) == len(seeds)
    assert any(s.input for s in seeds) and any(not s.input for s in seeds)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")
def test_shared_selfinstruct_and_alpaca_seeds():
    si = load_seeds(SHARED / "seed/selfinstruct_seed_tasks.jsonl", "selfinstruct", "si")
    assert len(si) == 175
    alpaca = load_seeds(SHARED / "seed/alpaca_5000.json", "alpaca", "alpaca")
    assert len(alpaca) == 5000 and all(s.source == "alpaca" for s in alpaca)
    topics = load_topics(SHARED / "topics/vital_articles_lvl1-4_en.json", "json_map")
    assert len(topics) == 10033


def test_bad_seed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "ok", "instances": []}\n{not json}\n')
    with pytest.raises(ValueError, match=r"seeds.jsonl:2"):
        load_seeds(bad, "selfinstruct", "x")


def test_missing_field_is_named(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"instruction": "Do a thing well."}, {"input": "x"}]))
    with pytest.raises(SourceError, match=r"record 2: missing or empty field 'instruction'"):
        load_seeds(f, "alpaca", "alpaca")


def test_topic_filter_counts_drops(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("# comment\nJazz\nAncient_Egypt\nHistory of the world\njazz\n\n")
    titles = load_topics(f, "text")
    kept, dropped = filter_topics(titles, max_words=2)
    assert kept == ["Jazz", "Ancient Egypt"]
    assert dropped == {"too_many_words": 1, "duplicate": 1}


def test_seed_rows_for_reanswer_and_passthrough(tmp_path):
    from herd.config import validate

    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
                             {"instruction": "Name a planet.", "input": "", "output": "Mars"},
                             {"instruction": "Unused.", "input": "", "output": "x"}]))
    cfg = validate({"seed_tasks": [
        {"path": str(PROJECT / "config/data/seed_tasks.jsonl")},
        {"path": str(f), "format": "alpaca", "source": "alpaca", "use": "reanswer", "limit": 2},
        {"path": str(f), "format": "alpaca", "source": "orig", "use": "passthrough", "limit": 1},
    ]})
    from herd.sources import load_seed_tasks, seed_rows

    assert len(load_seed_tasks(cfg["seed_tasks"])) == 48  # only the examples
    assert seed_rows(cfg["seed_tasks"], "reanswer") == [
        {"id": "seed-alpaca-0000000", "instruction": "Add the numbers.\n\n2, 3", "instruction_source": "alpaca"},
        {"id": "seed-alpaca-0000001", "instruction": "Name a planet.", "instruction_source": "alpaca"},
    ]
    assert seed_rows(cfg["seed_tasks"], "passthrough") == [
        {"id": "seed-orig-0000000", "instruction": "Add the numbers.\n\n2, 3", "instruction_source": "orig",
         "response": "5"}]
