import json

import pytest
from rouge_score import rouge_scorer

from herd.dedup import RougeNovelty, rouge_l_f1, rouge_tokens
from herd.filters import Blacklist, ExactDuplicate, LeadingChar, ProgramPrefix, WordCount, apply_filters, build_steps

CFG = {"min_words": 4, "max_words": 150, "rouge_threshold": 0.7,
       "blacklist": ["image", "images", "go to", "map", "draw"]}


@pytest.mark.parametrize("text,reason", [
    ("Name a colour.", "too_short"),
    (" ".join(["word"] * 151), "too_long"),
    ("Describe the image below in detail.", "blacklist:image"),
    ("Please go to the store and buy milk.", "blacklist:go to"),
    ("Write a program that sorts a list.", "write_a_program"),
    ("\"Explain the rules of chess briefly.", "leading_punctuation"),
    ("¿Cómo se dice hola en inglés?", "leading_non_ascii"),
])
def test_each_drop_has_its_reason(text, reason):
    kept, excluded, stats = apply_filters([{"id": "a", "instruction": text}], build_steps(CFG, []))
    assert kept == []
    assert excluded[0]["reason"] == reason
    assert stats["dropped_by_reason"] == {reason: 1}


def test_blacklist_matches_whole_words_only():
    bl = Blacklist(("map", "draw"))
    assert bl("Explain how a hashmap works in detail.") is None
    assert bl("Which drawer holds the spoons today?") is None
    assert bl("Read the MAP and describe it.") == "blacklist:map"


def test_word_count_boundaries():
    wc = WordCount(4, 6)
    assert wc("one two three") == "too_short"
    assert wc("one two three four") is None
    assert wc("1 2 3 4 5 6") is None
    assert wc("1 2 3 4 5 6 7") == "too_long"


def test_exact_duplicate_ignores_case_and_spacing():
    dup = ExactDuplicate()
    assert dup("Name three  rivers in Asia.") is None
    assert dup("name three rivers in asia.") == "exact_duplicate"


def test_rouge_matches_rouge_score_package():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = [
        ("Give three tips for staying healthy.", "Give 3 tips to stay healthy and fit!"),
        ("What is the capital of France?", "Name the capital city of France."),
        ("Explain photosynthesis.", "Describe how a car engine works."),
    ]
    for a, b in pairs:
        expected = scorer.score(b, a)["rougeL"].fmeasure
        assert rouge_l_f1(rouge_tokens(a), rouge_tokens(b)) == pytest.approx(expected)


def test_rouge_novelty_compares_with_seeds_and_kept_in_order():
    nov = RougeNovelty(["Give three tips for staying healthy."], threshold=0.7)
    assert nov("Give three tips for staying very healthy.") == "rouge_similar"  # near a seed
    assert nov("Explain how a rainbow forms after rain.") is None  # kept, becomes a reference
    assert nov("Explain how a rainbow forms after the rain.") == "rouge_similar"  # near a kept one
    assert nov("List four uses of copper in industry.") is None


def test_steps_run_in_order_and_stats_add_up():
    records = [
        {"id": "1", "instruction": "Explain how a rainbow forms after rain."},
        {"id": "2", "instruction": "Explain how a rainbow forms after rain."},
        {"id": "3", "instruction": "Hi."},
        {"id": "4", "instruction": "List four uses of copper in industry."},
    ]
    kept, excluded, stats = apply_filters(records, build_steps(CFG, []))
    assert [r["id"] for r in kept] == ["1", "4"]
    assert {e["id"]: e["reason"] for e in excluded} == {"2": "exact_duplicate", "3": "too_short"}
    assert stats == {"input": 4, "kept": 2, "dropped": 2,
                     "dropped_by_reason": {"exact_duplicate": 1, "too_short": 1}}


def test_leading_char_and_prefix():
    assert LeadingChar()("") == "empty"
    assert LeadingChar()("3 reasons to learn Python?") is None
    assert ProgramPrefix()("write a program to add numbers") == "write_a_program"


# --- embedding near-duplicates, with real all-MiniLM-L6-v2 embeddings (the packaged model) ---

EMB_CFG = {**CFG, "embedding_threshold": 0.8}
SEED = "Give three tips for staying healthy."
PARAPHRASE = "What are three ways to stay healthy?"  # cosine about 0.88 with SEED, ROUGE-L F1 0.31


@pytest.fixture(scope="module")
def minilm():
    from herd.embeddings import load_embedder

    return load_embedder("all-minilm-l6-v2")


def test_embedding_novelty_drops_paraphrases_that_rouge_keeps():
    from herd.filters import Drop, EmbeddingNovelty

    assert rouge_l_f1(rouge_tokens(SEED), rouge_tokens(PARAPHRASE)) <= 0.7  # ROUGE-L misses it
    step = EmbeddingNovelty([SEED], threshold=0.8)  # no prepare: each text embedded on its own
    drop = step(PARAPHRASE)
    assert isinstance(drop, Drop) and drop.reason == "embedding_similar"
    assert drop.detail["nearest"] == SEED and 0.8 < drop.detail["similarity"] < 1
    assert step("Name the capital city of France.") is None  # unrelated: kept, now a reference
    drop = step("What is the capital of France?")  # ROUGE-L F1 0.67 with the kept one
    assert drop.reason == "embedding_similar" and drop.detail["nearest"] == "Name the capital city of France."
    assert step("Translate 'good morning' into Spanish.") is None
    assert step("List four uses of copper in industry.") is None


def test_build_steps_adds_the_embedding_step_only_when_enabled():
    from herd.filters import EmbeddingNovelty

    assert not any(isinstance(s, EmbeddingNovelty) for s in build_steps(CFG, []))
    assert not any(isinstance(s, EmbeddingNovelty) for s in build_steps({**CFG, "embedding_threshold": None}, []))
    step = build_steps(EMB_CFG, [SEED])[-1]
    assert isinstance(step, EmbeddingNovelty) and step.threshold == 0.8
    assert step._encoder is None  # the model loads on first use, not when the step is built


def test_embedding_drops_are_counted_with_nearest_text_in_the_exclusions():
    records = [
        {"id": "1", "instruction": "Name the capital city of France."},
        {"id": "2", "instruction": "What is the capital of France?"},  # paraphrase of 1
        {"id": "3", "instruction": "What is the capital of France today?"},  # ROUGE-L 0.92 with 2, 0.62 with 1
        {"id": "4", "instruction": "  What are three ways to stay healthy?"},  # paraphrase of the seed
        {"id": "5", "instruction": "Name the capital city of France."},  # exact repeat of 1
        {"id": "6", "instruction": "Name the capital city of Spain, please."},  # ROUGE-L 0.77 with 1
        {"id": "7", "instruction": "Translate 'good morning' into Spanish."},
        {"id": "8", "instruction": "Hi."},
    ]
    kept, excluded, stats = apply_filters(records, build_steps(EMB_CFG, [SEED]))
    assert [r["id"] for r in kept] == ["1", "7"]
    reasons = {e["id"]: e["reason"] for e in excluded}
    # 3 is near 2 by ROUGE-L, but 2 was dropped, so it is no reference: 3 meets 1 by embedding
    assert reasons == {"2": "embedding_similar", "3": "embedding_similar", "4": "embedding_similar",
                       "5": "exact_duplicate", "6": "rouge_similar", "8": "too_short"}
    nearest = {e["id"]: e.get("nearest") for e in excluded}
    assert nearest == {"2": records[0]["instruction"], "3": records[0]["instruction"], "4": SEED,
                       "5": None, "6": None, "8": None}
    assert all(0.8 < e["similarity"] <= 1 for e in excluded if e["reason"] == "embedding_similar")
    assert stats == {"input": 8, "kept": 2, "dropped": 6,
                     "dropped_by_reason": {"embedding_similar": 3, "exact_duplicate": 1,
                                           "rouge_similar": 1, "too_short": 1}}


@pytest.fixture(scope="module")
def alpaca_instructions():
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared/data/seed/alpaca_5000.json"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return [r["instruction"] for r in json.loads(path.read_text())]


def test_blocked_embedding_filter_keeps_exactly_what_the_plain_loop_keeps(minilm, alpaca_instructions):
    import random

    import numpy as np

    from herd.embeddings import embedding_novelty_keep, encode
    from herd.filters import EmbeddingNovelty

    rng = random.Random(0)
    real = alpaca_instructions[:240]
    near = []
    for text in rng.sample(real, 60):  # a word dropped: near duplicates, mostly cos > 0.9
        words = text.split()
        del words[rng.randrange(len(words))]
        near.append(" ".join(words))
    candidates = real + near + real[:5]  # and a few exact repeats
    rng.shuffle(candidates)
    seeds = [SEED, "Explain photosynthesis to a child."]
    threshold = 0.9

    # the plain algorithm: every candidate against the seeds and every kept one, one at a time
    unique = list(dict.fromkeys(candidates))
    vec = dict(zip(unique, encode(minilm, unique)))
    refs = list(encode(minilm, seeds))
    expected = []
    for text in candidates:
        keep = max(float(r @ vec[text]) for r in refs) <= threshold
        expected.append(keep)
        if keep:
            refs.append(vec[text])
    assert 10 < expected.count(False) < len(candidates) - 100

    step = EmbeddingNovelty(seeds, threshold, block=16)  # small blocks: many block boundaries
    step._encoder = minilm
    kept, excluded, _ = apply_filters([{"id": str(i), "instruction": t} for i, t in enumerate(candidates)], [step])
    assert [int(r["id"]) for r in kept] == [i for i, k in enumerate(expected) if k]
    assert {e["reason"] for e in excluded} == {"embedding_similar"}

    flags = embedding_novelty_keep(np.stack([vec[t] for t in candidates]), threshold,
                                   references=encode(minilm, seeds), block=16)
    assert flags.tolist() == expected


# --- the filter stage's core (scripts/filter.py reads, calls these, writes) ---

def _seed_specs(tmp_path, rows):
    from herd.config import validate

    f = tmp_path / "seeds.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return validate({"seed_tasks": [{"path": str(f)}]})["seed_tasks"]


def test_seed_references_have_each_seed_with_and_without_its_input(tmp_path):
    from herd.filters import seed_references

    specs = _seed_specs(tmp_path, [
        {"id": "a", "name": "a", "instruction": "Sort the numbers.", "instances": [{"input": "3, 1, 2", "output": "1, 2, 3"}]},
        {"id": "b", "name": "b", "instruction": "Name three rivers.", "instances": [{"input": "", "output": "Nile"}]},
        {"id": "c", "name": "c", "instruction": "Name three rivers.", "instances": [{"input": "", "output": "Po"}]},
    ])
    # sorted, each once; a seed without input appears only as its instruction
    assert seed_references(specs) == ["Name three rivers.", "Sort the numbers.", "Sort the numbers.:3, 1, 2"]


RUN_RECORDS = [
    {"id": "b", "instruction": "Explain how a rainbow forms after rain."},
    {"id": "a", "instruction": "Explain how a rainbow forms after rain."},  # first by id: it is the one kept
    {"id": "c", "instruction": "Hi."},
    {"id": "d", "instruction": "Give three tips for staying very healthy."},  # near the seed
]


def test_run_filter_takes_records_by_id_and_compares_with_the_seeds():
    from herd.filters import run_filter

    kept, excluded, stats, steps = run_filter(RUN_RECORDS, CFG, ["Give three tips for staying healthy."],
                                              workers=1, threads=1, shards=2)
    assert [r["id"] for r in kept] == ["a"]
    assert [(e["id"], e["reason"]) for e in excluded] == [("b", "exact_duplicate"), ("c", "too_short"),
                                                         ("d", "rouge_similar")]
    assert stats["dropped_by_reason"] == {"exact_duplicate": 1, "rouge_similar": 1, "too_short": 1}
    assert isinstance(steps[-1], RougeNovelty)


def test_run_filter_with_nothing_kept_names_the_shards_unless_there_are_none():
    from herd.filters import run_filter

    hi = [{"id": "x", "instruction": "Hi."}]
    with pytest.raises(ValueError, match=r"^filter: none of 1 instructions generated by 3 shards "
                                         r"\(results/instructions/\) survived: \{'too_short': 1\}$"):
        run_filter(hi, CFG, [], workers=1, threads=1, shards=3)
    # no generation shard: a run of re-answered seeds only, where nothing kept is the result
    kept, excluded, _, _ = run_filter([], CFG, [], workers=1, threads=1, shards=0)
    assert kept == [] and excluded == []
