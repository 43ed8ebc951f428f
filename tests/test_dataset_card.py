"""The dataset card and assembly: licences per seed file, unique row ids, truncated answers left out.

Seed rows come from seed files on disk through herd.sources.seed_rows, as the seed_rows
rule makes them; answered rows are written as the responses stage writes its shards.
"""
import json

import pytest
from conftest import ROOT

from herd import dataset, io
from herd.config import validate
from herd.sources import seed_rows

FILTER_STATS = {"input": 10, "kept": 4, "dropped": 6, "dropped_by_reason": {"too_short": 6}}
SETTINGS = {"teacher": "fake", "backend": "openai"}
EXAMPLES = str(ROOT / "config/data/seed_tasks.jsonl")


def _alpaca(path, n, prefix):
    path.write_text(json.dumps([{"instruction": f"{prefix} task number {i}, please do it.", "input": "",
                                 "output": f"{prefix} output {i}"} for i in range(n)]))
    return str(path)


@pytest.fixture
def seed_cfg(tmp_path):
    """Four seed_tasks entries sharing the default source label, under three licences."""
    cfg = validate({"seed_tasks": [
        {"path": EXAMPLES, "licence": "Apache-2.0"},
        {"path": _alpaca(tmp_path / "nc.json", 3, "NC"), "format": "alpaca", "use": "reanswer",
         "licence": "CC BY-NC 4.0"},
        {"path": _alpaca(tmp_path / "nc.json", 3, "NC"), "format": "alpaca", "use": "passthrough", "limit": 2,
         "licence": "CC BY-NC 4.0"},
        {"path": _alpaca(tmp_path / "mit.json", 2, "MIT"), "format": "alpaca", "use": "passthrough",
         "licence": "MIT"},
    ]})
    return cfg["seed_tasks"]


def _entries(specs):  # what rules/dataset.smk passes as params.seed_entries
    return [{"index": i, **{k: s[k] for k in ("path", "format", "use", "source", "licence")}}
            for i, s in enumerate(specs)]


def _answered(rows, finish_reason="stop"):
    return [{**r, "response": f"An answer to: {r['instruction']}", "finish_reason": finish_reason,
             "completion_tokens": 9} for r in rows]


def _generated(n):
    return [{"id": f"example-{i:05d}-00", "instruction": f"Generated question {i}?", "response": f"Reply {i}.",
             "instruction_source": "self_instruct_without_topic", "finish_reason": "stop"} for i in range(n)]


def _write_parts(tmp_path, shards, passthrough):
    parts = []
    for i, rows in enumerate(shards):
        parts.append((str(tmp_path / f"{i}.jsonl"), rows))
    parts.append((str(tmp_path / "passthrough.jsonl"), passthrough))
    for path, rows in parts:
        io.write_jsonl(path, rows)
    return [(path, io.read_jsonl(path)) for path, _ in parts]


def test_seed_ids_are_unique_across_entries_that_share_a_source(seed_cfg):
    passthrough = seed_rows(seed_cfg, "passthrough")
    reanswer = seed_rows(seed_cfg, "reanswer")
    ids = [r["id"] for r in passthrough + reanswer]
    assert len(ids) == len(set(ids)) == 3 + 2 + 2
    assert {r["instruction_source"] for r in passthrough + reanswer} == {"self_instruct_seed"}
    # each row names its seed_tasks entry, which the card reads back
    assert [dataset.seed_entry(r["id"]) for r in reanswer] == [1, 1, 1]
    assert [dataset.seed_entry(r["id"]) for r in passthrough] == [2, 2, 3, 3]
    assert passthrough[2]["id"] == "seed-self_instruct_seed-3-0000000"
    assert dataset.seed_entry("example-00003-07") is None
    assert dataset.seed_entry("seed-my-label-2-12-0000004") == 12  # a label with dashes and digits


def test_card_lists_every_seed_file_with_its_licence_use_and_rows(tmp_path, seed_cfg):
    entries = _entries(seed_cfg)
    parts = _write_parts(tmp_path, [_generated(4), _answered(seed_rows(seed_cfg, "reanswer"))],
                         seed_rows(seed_cfg, "passthrough"))
    rows, report = dataset.assemble(parts, {0: {}, 1: {}})
    assert len(rows) == 4 + 3 + 4
    train, val = dataset.split(rows, 0.2, seed=1)
    text = dataset.card(train, val, report, SETTINGS, FILTER_STATS, entries)

    assert f"| 0 | {EXAMPLES} | selfinstruct | examples | self_instruct_seed | Apache-2.0 | " \
           "4 (generated from its examples) |" in text
    assert f"| 1 | {tmp_path / 'nc.json'} | alpaca | reanswer | self_instruct_seed | CC BY-NC 4.0 | 3 |" in text
    assert f"| 2 | {tmp_path / 'nc.json'} | alpaca | passthrough | self_instruct_seed | CC BY-NC 4.0 | 2 |" in text
    assert f"| 3 | {tmp_path / 'mit.json'} | alpaca | passthrough | self_instruct_seed | MIT | 2 |" in text
    assert "Licences that apply to the rows: Apache-2.0 (4 rows), CC BY-NC 4.0 (5 rows), MIT (2 rows)." in text
    assert dataset.provenance(rows, entries) == ({0: 4, 1: 3, 2: 2, 3: 2},
                                                 {"Apache-2.0": 4, "CC BY-NC 4.0": 5, "MIT": 2})


def test_a_licence_without_rows_is_not_named_as_applying(tmp_path, seed_cfg):
    entries = _entries(seed_cfg)
    only_mit = [r for r in seed_rows(seed_cfg, "passthrough") if dataset.seed_entry(r["id"]) == 3]
    _, per_licence = dataset.provenance(only_mit, entries)
    assert per_licence == {"MIT": 2}  # no generated rows: the examples' Apache-2.0 does not apply
    stale = {**only_mit[0], "id": "seed-self_instruct_seed-0000000"}  # an id of before the entry was in it
    with pytest.raises(ValueError, match="does not name its seed_tasks entry"):
        dataset.provenance([stale], entries)
    with pytest.raises(ValueError, match="names seed_tasks entry 7, but seed_tasks has 4 entries"):
        dataset.provenance([{**stale, "id": "seed-self_instruct_seed-7-0000000"}], entries)


def test_duplicate_ids_stop_the_assembly_naming_the_id_and_files(tmp_path):
    row = {"id": "seed-alpaca-0000000", "instruction": "Name a planet.", "response": "Mars",
           "instruction_source": "alpaca"}
    parts = _write_parts(tmp_path, [[{**row, "finish_reason": "stop"}]], [row])
    with pytest.raises(ValueError, match=r"'seed-alpaca-0000000' occurs in .*0\.jsonl and in .*passthrough\.jsonl"):
        dataset.assemble(parts, {0: {}})
    with pytest.raises(ValueError, match=r"occurs twice in .*passthrough\.jsonl"):
        dataset.check_unique_ids([("passthrough.jsonl", [row, row])])


def test_truncated_answers_are_dropped_counted_and_shown(tmp_path, seed_cfg):
    assert validate({})["dataset"]["drop_truncated"] is True
    reanswer = seed_rows(seed_cfg, "reanswer")
    cut = {**_generated(1)[0], "id": "example-00009-00", "finish_reason": "length",
           "response": "Capital gains are taxed when an asset is sold, due to the loss of capital an"}
    shard = _generated(2) + [cut] + _answered(reanswer[:1], "length") + _answered(reanswer[1:])
    passthrough = seed_rows(seed_cfg, "passthrough")  # no finish_reason: kept
    parts = _write_parts(tmp_path, [shard], passthrough)

    rows, report = dataset.assemble(parts, {0: {}})
    assert report["dropped"] == {"truncated_response": 2}
    assert {r["id"] for r in rows} == {r["id"] for r in _generated(2) + reanswer[1:] + passthrough}
    assert report["truncated_examples"] == [
        {"id": "example-00009-00", "tail": cut["response"][-dataset.TAIL_CHARS:].lstrip()},
        {"id": reanswer[0]["id"], "tail": f"An answer to: {reanswer[0]['instruction']}"[-dataset.TAIL_CHARS:].lstrip()}]
    train, val = dataset.split(rows, 0.2, seed=1)
    text = dataset.card(train, val, report, SETTINGS, FILTER_STATS, _entries(seed_cfg))
    assert "| truncated_response | 2 |" in text
    assert f"- `example-00009-00`: \"...{cut['response'][-60:].lstrip()}\"" in text
    assert "due to the loss of capital an\"" in text

    kept, report = dataset.assemble(parts, {0: {}}, drop_truncated=False)
    assert len(kept) == len(shard) + len(passthrough) and report["dropped"] == {}
    assert report["truncated_examples"] == [] and report["truncated_kept"] == 2
    text = dataset.card(*dataset.split(kept, 0.2, seed=1), report, SETTINGS, FILTER_STATS, _entries(seed_cfg))
    assert "2 kept answers were stopped at max_tokens" in text


def test_failed_teacher_requests_are_counted_in_the_card(tmp_path, seed_cfg):
    parts = _write_parts(tmp_path, [_generated(3), []], [])
    stats = {0: {"failed_requests": [{"id": "example-00007-01", "error": "client_error: HTTP 400: no"}]},
             1: {"failed_requests": [{"id": "seed-self_instruct_seed-1-0000002", "error": "timeout"}]}}
    rows, report = dataset.assemble(parts, stats)
    assert report["failed_requests"] == [
        {"id": "example-00007-01", "error": "client_error: HTTP 400: no", "shard": 0},
        {"id": "seed-self_instruct_seed-1-0000002", "error": "timeout", "shard": 1}]
    train, val = dataset.split(rows, 0.3, seed=1)
    text = dataset.card(train, val, report, SETTINGS, FILTER_STATS, _entries(seed_cfg))
    assert "| failed teacher request | 2 |" in text
    assert "- `example-00007-01` (shard 0): client_error: HTTP 400: no" in text
    assert "the next `snakemake` run retries them" in text


def test_generation_losses_reach_the_card():
    """Instructions lost before the filter (answers cut at max_tokens) are counted on the card,
    from the instruction shards' stats as herd.instructions writes them."""
    from herd.prompts import parse_generation

    cut = "1. Name three rivers in Europe.\n2. Explain why the sky is blue.\n3. Describe the water cyc"
    parsed = parse_generation(cut, "length")
    assert parsed.instructions == ["Name three rivers in Europe.", "Explain why the sky is blue."]
    shard = {"prompts": 1, "cut_answers": 1, "unparsable_answers": 0,
             "rejected_fragments": dict(parsed.rejected), "failed_requests": [{"id": "example-00001", "error": "x"}]}
    summary = dataset.generation_summary([shard, {**shard, "failed_requests": []}])
    assert summary == {"prompts": 2, "cut_answers": 2, "unparsable_answers": 0, "truncated_fragments": 2,
                       "failed_prompts": 1}
    rows = [{"id": "example-00000-00", "instruction": "Name three rivers in Europe.", "response": "Rhine.",
             "instruction_source": "self_instruct_without_topic", "finish_reason": "stop"}]
    kept, report = dataset.assemble([("r.jsonl", rows)], {})
    report["generation"] = summary
    entries = [{"index": 0, "path": EXAMPLES, "format": "selfinstruct", "use": "examples",
                "source": "self_instruct_seed", "licence": "Apache-2.0"}]
    text = dataset.card(kept, kept, report, SETTINGS, FILTER_STATS, entries)
    assert "2 answers were stopped at max_tokens and lost 2 cut-off instructions" in text
    assert "1 prompts failed" in text


def test_request_seeds_do_not_move_when_seed_entries_are_added(seed_cfg, tmp_path):
    """Row ids name their seed_tasks entry; the teacher is asked under an id without it, so adding
    an entry above a re-answered file keeps every request's seed and cache key: nothing is paid twice."""
    from herd.responses import build_requests
    from herd.teacher import request_key

    before = seed_rows(seed_cfg, "reanswer")
    extra = validate({"seed_tasks": [{"path": _alpaca(tmp_path / "x.json", 2, "X"), "format": "alpaca",
                                      "use": "reanswer", "licence": "MIT"}]})["seed_tasks"]
    after = [r for r in seed_rows(extra + seed_cfg, "reanswer") if r["instruction"].startswith("NC")]
    assert [r["id"] for r in before] != [r["id"] for r in after]  # the entry moved from 1 to 2
    assert [r["request_id"] for r in before] == [r["request_id"] for r in after]
    cfg = validate({})["responses"]
    keys = [[request_key("openai", "m", q) for q in build_requests(rows, cfg, seed=0)] for rows in (before, after)]
    assert keys[0] == keys[1]
