import pytest
from rouge_score import rouge_scorer

from herd.filters import (
    Blacklist, ExactDuplicate, LeadingChar, ProgramPrefix, RougeNovelty, WordCount,
    apply_filters, build_steps, rouge_l_f1, rouge_tokens,
)

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
