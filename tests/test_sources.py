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
        {"id": "seed-alpaca-1-0000000", "request_id": "seed-alpaca-0000000", "instruction": "Add the numbers.\n\n2, 3",
         "instruction_source": "alpaca"},
        {"id": "seed-alpaca-1-0000001", "request_id": "seed-alpaca-0000001", "instruction": "Name a planet.",
         "instruction_source": "alpaca"},
    ]
    assert seed_rows(cfg["seed_tasks"], "passthrough") == [
        {"id": "seed-orig-2-0000000", "request_id": "seed-orig-0000000", "instruction": "Add the numbers.\n\n2, 3",
         "instruction_source": "orig", "response": "5"}]


# Hugging Face datasets as seed sources (format hf): a local dataset folder goes through the
# same datasets.load_dataset call as a Hub name, offline.

def _hf_dir(tmp_path, rows, name="train.jsonl"):
    d = tmp_path / "ds"
    d.mkdir()
    (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_hf_local_dataset_folder_with_column_mapping(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    from herd.config import validate
    from herd.sources import load_spec

    d = _hf_dir(tmp_path, [{"inputs": f"Question {i}: what is {i} + {i}?", "targets": str(2 * i), "task": "add"}
                           for i in range(6)])
    cfg = validate({"seed_tasks": [{"path": str(d), "format": "hf", "source": "p3",
                                    "columns": {"instruction": "inputs", "output": "targets"},
                                    "use": "reanswer", "limit": 4}]})
    seeds = load_spec(cfg["seed_tasks"][0])
    assert [s.instruction for s in seeds] == [f"Question {i}: what is {i} + {i}?" for i in range(4)]
    assert [(s.input, s.output, s.source) for s in seeds[:2]] == [("", "0", "p3"), ("", "2", "p3")]
    from herd.sources import seed_rows

    assert seed_rows(cfg["seed_tasks"], "reanswer")[1] == {
        "id": "seed-p3-0-0000001", "request_id": "seed-p3-0000001", "instruction": "Question 1: what is 1 + 1?",
        "instruction_source": "p3"}


def test_hf_parquet_folder_default_columns_split_and_shuffle(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    import pandas as pd

    from herd.sources import load_hf

    d = tmp_path / "alpaca"
    d.mkdir()
    rows = [{"instruction": f"Name thing {i}.", "input": "ctx" if i % 2 else "", "output": f"thing {i}"}
            for i in range(20)]
    pd.DataFrame(rows).to_parquet(d / "train-00000-of-00001.parquet")
    first = load_hf(d, "alpaca", limit=3)
    assert [s.instruction for s in first] == ["Name thing 0.", "Name thing 1.", "Name thing 2."]
    assert first[1].input == "ctx" and first[1].output == "thing 1"
    sample = load_hf(d, "alpaca", limit=5, shuffle=True)
    assert len(sample) == 5 and len({s.instruction for s in sample}) == 5
    assert sample == load_hf(d, "alpaca", limit=5, shuffle=True)  # a fixed seed: the same sample
    assert [s.instruction for s in sample] != [s.instruction for s in load_hf(d, "alpaca", limit=5)]
    assert len(load_hf(d, "alpaca", split="train[:50%]")) == 10


def test_hf_missing_instruction_column_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    from herd.sources import load_hf

    d = _hf_dir(tmp_path, [{"prompt": "Say hi.", "completion": "hi"}])
    with pytest.raises(SourceError, match=r"no column 'instruction'.*\['completion', 'prompt'\]|no column 'instruction'.*prompt"):
        load_hf(d, "x")
    with pytest.raises(SourceError, match=r"no column 'answer' for the output"):
        load_hf(d, "x", columns={"instruction": "prompt", "output": "answer"})
    assert load_hf(d, "x", columns={"instruction": "prompt", "output": "completion"})[0].output == "hi"


def test_hf_hub_sources_are_no_rule_inputs(tmp_path):
    from herd.sources import is_local

    d = _hf_dir(tmp_path, [{"instruction": "Do it."}])
    assert not is_local({"path": "tatsu-lab/alpaca", "format": "hf"})
    assert is_local({"path": str(d), "format": "hf"})
    assert is_local({"path": "config/data/seed_tasks.jsonl", "format": "selfinstruct"})
