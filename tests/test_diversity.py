"""The diversity report on a small real input: embeddings from the packaged MiniLM model."""
import json

import numpy as np
import pytest

from herd import diversity
from herd.filters import apply_filters, build_steps

SEEDS = [
    "Give three tips for staying healthy.",
    "Explain photosynthesis to a child.",
    "Write a haiku about autumn leaves.",
    "Summarize the plot of Romeo and Juliet.",
]
EXAMPLE = [  # as the teacher wrote them, before the filter (the 3rd repeats the 1st)
    "Describe how a rainbow forms after rain.",
    "List four uses of copper in industry.",
    "Describe how a rainbow forms after rain.",
    "Describe how a rainbow forms after the rain.",
    "Suggest a name for a bakery that sells bagels.",
    "Convert 25 degrees Celsius to Fahrenheit.",
    "Hi.",
    "Give three tips for staying very healthy.",
]
TOPIC = [
    "Explain why the Roman Empire fell.",
    "Name three rivers in South America.",
    "Compare the climates of Norway and Egypt.",
    "What causes the seasons on Earth?",
]
ALPACA = [  # re-answered seed rows: not filtered, so their duplicates reach the dataset
    "Translate 'good morning' into Spanish.",
    "Translate 'good morning' into Spanish.",
    "How do you say good morning in Spanish?",
    "Identify the odd one out: apple, banana, carrot.",
]
PASSTHROUGH = ["Classify the sentiment of: I loved this film.", "Rewrite the sentence in passive voice: The cat ate the fish."]
CFG = {"embedding_model": "all-minilm-l6-v2", "clusters": 3, "sample_per_source": 6,
       "rouge_sample_per_source": 50000, "duplicate_rouge_threshold": 0.7, "duplicate_embedding_threshold": 0.85}


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    generated = [{"id": f"example-{i:05d}-00", "instruction": t, "instruction_source": "self_instruct_without_topic"}
                 for i, t in enumerate(EXAMPLE)]
    generated += [{"id": f"topic-{i:05d}-00", "instruction": t, "instruction_source": "self_instruct_with_topic"}
                  for i, t in enumerate(TOPIC)]
    cfg = {"min_words": 4, "max_words": 150, "blacklist": ["image"], "rouge_threshold": 0.7}
    kept, excluded, stats = apply_filters(generated, build_steps(cfg, SEEDS))
    rows = [{**r, "response": f"An answer to: {r['instruction']} It has several words."} for r in kept]
    rows += [{"id": f"seed-alpaca-{i:07d}", "instruction": t, "instruction_source": "alpaca",
              "response": "Buenos dias." if "Spanish" in t else "Carrot, the only vegetable."} for i, t in enumerate(ALPACA)]
    rows += [{"id": f"seed-alpaca_original-{i:07d}", "instruction": t, "instruction_source": "alpaca_original",
              "response": "Positive." if "film" in t else "The fish was eaten by the cat."} for i, t in enumerate(PASSTHROUGH)]
    out = tmp_path_factory.mktemp("diversity")
    kinds = diversity.source_kinds([{"source": "alpaca", "use": "reanswer"},
                                    {"source": "alpaca_original", "use": "passthrough"},
                                    {"source": "self_instruct_seed", "use": "examples"}])
    result = diversity.report(rows, SEEDS, CFG, 1234, out / "map.png", generated=kept + excluded,
                              filter_stats=stats, kinds=kinds)
    json.dumps(result)  # serialisable as it is
    return result, out, stats


def test_summary_has_sources_seeds_mattr_and_clusters(summary):
    result, out, _ = summary
    per = result["per_source"]
    assert set(per) == {"self_instruct_without_topic", "self_instruct_with_topic", "alpaca", "alpaca_original", "seed"}
    assert per["seed"]["n"] == 4 and per["seed"]["kind"] == "seed tasks (examples)" and "mattr_responses" not in per["seed"]
    assert per["self_instruct_without_topic"]["kind"] == "example-guided"
    assert per["self_instruct_with_topic"]["kind"] == "topic-guided"
    assert per["alpaca"]["kind"] == "reanswer" and per["alpaca_original"]["kind"] == "passthrough"
    for src in ["self_instruct_without_topic", "self_instruct_with_topic", "alpaca", "alpaca_original"]:
        assert 0 < per[src]["mattr_instructions"] <= 1 and 0 < per[src]["mattr_responses"] <= 1
        assert -1 <= per[src]["mean_pairwise_cosine"] <= 1
    assert result["seeds"] == 4 and result["instructions"] == sum(per[s]["n"] for s in per if s != "seed")
    assert 1 <= len(result["clusters"]) <= 3 and all(c["top_terms"] for c in result["clusters"])
    assert result["mattr_window"] == 50
    # the map holds every embedded dataset row and the seeds as their own group
    assert result["map"]["per_group"]["seed"] == 4
    assert result["map"]["points"] == sum(per[s]["n_embedded"] for s in per)
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"


def test_duplicate_rates_in_the_dataset(summary):
    result, _, _ = summary
    dup = result["duplicates"]
    assert set(dup) >= {"definitions", "dataset", "seed", "generated_before_filter", "filter", "notes"}
    alpaca = dup["dataset"]["alpaca"]
    # unfiltered: one exact repeat of 4; embeddings also catch the paraphrase (cosine 0.88 > 0.85)
    assert alpaca["n"] == 4 and alpaca["exact_duplicates"] == 1 and alpaca["exact_duplicate_rate"] == 0.25
    assert alpaca["rouge_duplicate_rate"] == 0.25 and alpaca["rouge_n"] == 4 and not alpaca["rouge_sampled"]
    assert alpaca["embedding_duplicate_rate"] == 0.5 and alpaca["embedding_n"] == 4 and not alpaca["embedding_sampled"]
    # the generated sources were deduplicated by the filter
    for src in ["self_instruct_without_topic", "self_instruct_with_topic"]:
        assert dup["dataset"][src]["exact_duplicate_rate"] == 0 and dup["dataset"][src]["rouge_duplicate_rate"] == 0
    assert dup["dataset"]["all"]["n"] == result["instructions"]
    assert dup["seed"]["n"] == 4 and dup["seed"]["exact_duplicate_rate"] == 0


def test_duplicate_rates_before_the_filter_and_its_drops(summary):
    result, _, stats = summary
    before = result["duplicates"]["generated_before_filter"]
    example = before["self_instruct_without_topic"]
    assert example["n"] == 8 and example["exact_duplicates"] == 1 and example["exact_duplicate_rate"] == 0.125
    # "... after the rain." repeats "... after rain." (F1 0.93) beside the exact repeat
    assert example["rouge_duplicate_rate"] == 0.25
    assert example["embedding_n"] == 6 and example["embedding_sampled"]  # sample_per_source: 6 of 8
    assert before["self_instruct_with_topic"]["exact_duplicate_rate"] == 0
    assert before["all"]["n"] == 12
    drops = result["duplicates"]["filter"]
    assert drops["dropped_by_reason"] == stats["dropped_by_reason"] == {
        "exact_duplicate": 1, "rouge_similar": 2, "too_short": 1}
    assert drops["per_source"]["self_instruct_without_topic"] == {
        "input": 8, "kept": 4, "keep_rate": 0.5,
        "dropped_by_reason": {"exact_duplicate": 1, "rouge_similar": 2, "too_short": 1}}
    assert drops["per_source"]["self_instruct_with_topic"]["kept"] == 4


def test_sampling_is_stated(summary):
    result, _, _ = summary
    assert result["sampling"]["sample_per_source"] == 6
    assert result["map"]["sampled"] is False  # no dataset source has more than 6 rows
    assert diversity.sample_indices(10, 4, 1, "x") == diversity.sample_indices(10, 4, 1, "x")
    assert len(diversity.sample_indices(10, 4, 1, "x")) == 4 and diversity.sample_indices(3, 4, 1, "x") == [0, 1, 2]


def test_mean_pairwise_cosine_matches_the_full_matrix():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sim = v @ v.T
    expected = (sim.sum() - np.trace(sim)) / (50 * 49)
    assert diversity.mean_pairwise_cosine(v) == pytest.approx(float(expected), abs=1e-6)
    assert diversity.mean_pairwise_cosine(v[:1]) is None
