"""Small pure pieces: seeds, splits, sharding, MATTR, the answer cache."""
import pytest

from herd.dataset import clean, split
from herd.diversity import mattr
from herd.instructions import build_requests, shard_prompts
from herd.responses import shard_records
from herd.rng import derive_seed
from herd.sources import Seed
from herd.teacher import Answer, Decoding, Request, ResponseCache, request_key


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, "a", 0) == derive_seed(1, "a", 0)
    assert len({derive_seed(1, "a", i) for i in range(100)}) == 100
    assert derive_seed(1, "a", 0) != derive_seed(2, "a", 0)


def test_shards_partition_the_prompts():
    parts = [shard_prompts(10, 3, s) for s in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(10))
    with pytest.raises(ValueError):
        shard_prompts(10, 3, 3)


def test_response_shards_partition_records():
    recs = [{"id": f"x{i:02d}"} for i in range(7)]
    parts = [shard_records(recs, 2, s) for s in range(2)]
    assert sorted(r["id"] for p in parts for r in p) == [r["id"] for r in recs]


def test_build_requests_is_deterministic_and_shows_topics():
    seeds = [Seed(f"Task number {i} please.", "", "", "s") for i in range(10)]
    cfg = {"examples_per_prompt": 3, "topics_per_prompt": 3, "per_prompt": 20, "per_prompt_long": 10,
           "long_example_words": 100,
           "example_guided": {"prompts": 4, "shards": 2}, "topic_guided": {"prompts": 4, "shards": 2},
           "decoding": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 100}}
    a = build_requests("topic", seeds, ["Jazz", "Tea", "Birds", "Chess"], cfg, 7, 1)
    b = build_requests("topic", seeds, ["Jazz", "Tea", "Birds", "Chess"], cfg, 7, 1)
    assert [x[1] for x in a] == [x[1] for x in b]
    assert [x[0] for x in a] == [1, 3]
    assert all(len(shown["examples"]) == 3 and len(shown["topics"]) == 3 for _, _, shown in a)
    assert a[0][1].seed != a[1][1].seed
    assert all(shown["asked"] == 20 and "Write 20 new tasks" in req.messages[-1]["content"] for _, req, shown in a)


def test_long_examples_ask_for_fewer_instructions():
    """LaMini: 20 instructions per call next to short seeds, 10 next to long P3/FLAN-style ones."""
    short = [Seed(f"Name a colour number {i}.", "", "", "s") for i in range(3)]
    long = [Seed("Summarise the passage.", " ".join(["word"] * 150), "", "p3")]
    cfg = {"examples_per_prompt": 3, "topics_per_prompt": 3, "per_prompt": 20, "per_prompt_long": 10,
           "long_example_words": 100, "example_guided": {"prompts": 30, "shards": 1},
           "topic_guided": {"prompts": 0, "shards": 1},
           "decoding": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 100}}
    planned = build_requests("example", short + long, [], cfg, 7, 0)
    for _, req, shown in planned:
        has_long = any(e.startswith("Summarise the passage.:") for e in shown["examples"])
        assert shown["asked"] == (10 if has_long else 20)
        assert f"Write {shown['asked']} new tasks" in req.messages[-1]["content"]
    assert {shown["asked"] for _, _, shown in planned} == {10, 20}


def test_split_is_deterministic_and_disjoint():
    rows = [{"id": f"r{i:03d}", "instruction": "i", "response": "r", "instruction_source": "s"} for i in range(50)]
    train, val = split(rows, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert not {r["id"] for r in train} & {r["id"] for r in val}
    assert split(rows, 0.1, seed=3) == (train, val)
    assert split(rows, 0.1, seed=4)[1] != val
    t2, v2 = split(rows[:2], 0.1, seed=3)
    assert len(t2) == 1 and len(v2) == 1


def test_clean_drops_empty_and_truncated_by_default():
    rows = [{"response": " ", "finish_reason": "stop"}, {"response": "ok", "finish_reason": "length"},
            {"response": "ok", "finish_reason": "stop"}]
    assert clean(rows, drop_truncated=False)[1] == {"empty_response": 1}
    kept, dropped = clean(rows)  # truncated answers are dropped by default
    assert len(kept) == 1 and dropped == {"empty_response": 1, "truncated_response": 1}


def test_mattr_window():
    assert mattr(["a", "b", "a", "b"], window=50) == 0.5
    assert mattr(["a", "b", "c", "d"], window=2) == 1.0
    assert mattr(["a", "a", "a", "b"], window=2) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_cache_roundtrip_and_key_sensitivity(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    req = Request([{"role": "user", "content": "hi"}], Decoding(0.7, 0.9, 10), seed=1)
    key = request_key("llamacpp", "m@1", req)
    assert cache.get(key) is None
    cache.put(key, Answer(text="hello", finish_reason="stop", completion_tokens=2))
    again = ResponseCache(tmp_path / "c.sqlite").get(key)
    assert again.text == "hello" and again.cached and again.completion_tokens == 2
    other = Request(req.messages, Decoding(0.8, 0.9, 10), seed=1)
    assert request_key("llamacpp", "m@1", other) != key
    assert request_key("llamacpp", "m@2", req) != key


def test_ledger_charges_only_fresh_answers():
    from herd.cost import ledger_rows, summarize
    from herd.teacher import Teacher

    teacher = Teacher("gpt-x", cache=None)
    teacher.backend = "openai"
    reqs = [Request([{"role": "user", "content": c}], Decoding(), seed=0) for c in "ab"]
    answers = [Answer("x", prompt_tokens=1_000_000, completion_tokens=2_000_000),
               Answer("y", prompt_tokens=1_000_000, completion_tokens=2_000_000, cached=True)]
    rows = ledger_rows(teacher, reqs, answers, "responses", {"prompt": 0.5, "completion": 1.5})
    assert [r["usd"] for r in rows] == [3.5, 0.0]
    assert rows[0]["key"] == request_key("openai", "gpt-x", reqs[0])
    assert summarize(rows) == {"requests": 2, "cached": 1, "prompt_tokens": 2_000_000,
                               "completion_tokens": 4_000_000, "usd": 3.5}


def test_plan_counts_requests_and_refuses_over_budget():
    from pathlib import Path

    from herd.config import load
    from herd.plan import check_budget, plan_from_config

    cfg = load(Path(__file__).resolve().parents[1] / "config.yaml")
    cfg["teacher"].update(backend="openai", model="gpt-3.5-turbo", max_budget_usd=1000.0)
    est = plan_from_config(cfg)
    ins = cfg["instructions"]
    assert est["stages"]["instructions"]["requests"] == ins["example_guided"]["prompts"] + ins["topic_guided"]["prompts"]
    # the default seeds are short: every prompt asks for per_prompt instructions
    assert est["instructions_per_prompt"] == ins["per_prompt"]
    generated = est["stages"]["instructions"]["requests"] * ins["per_prompt"]
    assert est["stages"]["responses"]["requests"] == generated // 2
    assert 0 < est["total"]["usd"] <= est["total"]["usd_max"]
    check_budget(est)
    cfg["teacher"]["batch"] = True
    assert plan_from_config(cfg)["total"]["usd"] == pytest.approx(est["total"]["usd"] / 2, rel=0.01)
    est["max_budget_usd"] = est["total"]["usd"] / 2
    with pytest.raises(ValueError, match="exceeds teacher.max_budget_usd"):
        check_budget(est)
    cfg["teacher"]["model"] = "unknown-model"
    with pytest.raises(ValueError, match="no entry for model 'unknown-model'"):
        check_budget(plan_from_config(cfg))
