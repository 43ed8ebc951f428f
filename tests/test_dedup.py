"""RougeNovelty keeps exactly what the plain sequential rouge_score algorithm keeps."""

import json
import random
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from herd import dedup
from herd.dedup import RougeNovelty, novelty_keep, rouge_l_f1, rouge_tokens

DATA = Path(__file__).resolve().parents[2] / "shared/data/seed"
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def reference_keep(candidates, references, threshold=0.7):
    """Alpaca's loop: score against every seed and every kept instruction, no pruning."""
    kept = [SCORER._tokenizer.tokenize(t) for t in references]
    flags = []
    for text in candidates:
        tokens = SCORER._tokenizer.tokenize(text)
        keep = all(rouge_scorer._score_lcs(tokens, ref).fmeasure <= threshold for ref in kept)
        flags.append(keep)
        if keep:
            kept.append(tokens)
    return flags


def streaming_keep(candidates, references, threshold=0.7):
    novelty = RougeNovelty(references, threshold)
    return [novelty(t) is None for t in candidates]


def perturb(text, rng, vocab):
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        op = rng.randrange(3)
        if op == 0 and len(words) > 1:
            del words[i]
        elif op == 1:
            words[i] = rng.choice(vocab)
        else:
            words.insert(i, rng.choice(vocab))
    return " ".join(words)


@pytest.fixture(scope="module")
def alpaca():
    path = DATA / "alpaca_5000.json"
    if not path.exists():
        pytest.skip(f"{path} not found")
    seeds = [json.loads(line)["instruction"]
             for line in (DATA / "selfinstruct_seed_tasks.jsonl").read_text().splitlines()]
    return [r["instruction"] for r in json.loads(path.read_text())], seeds


def test_real_alpaca_instructions_with_near_duplicates(alpaca):
    real, seeds = alpaca
    rng = random.Random(0)
    vocab = " ".join(real[:300]).split()
    candidates = real[:250] + [perturb(rng.choice(real[:250] + seeds), rng, vocab) for _ in range(100)]
    rng.shuffle(candidates)
    expected = reference_keep(candidates, seeds)
    assert 0 < expected.count(False) < len(candidates)
    assert streaming_keep(candidates, seeds) == expected
    assert novelty_keep(candidates, seeds) == expected


ADVERSARIAL = [
    "Give three tips for staying healthy.",
    "Give three tips for staying healthy.",  # identical
    "give THREE tips, for staying healthy!!",  # identical after tokenisation
    "",  # empty
    "¿¡ — … ✓",  # empty after tokenisation
    "日本語の文",  # non-ASCII only: no tokens
    "Hello",  # one token
    "hello!",
    "Hello world",
    "Café naïve résumé",  # caf, na, ve, r, sum
    "Cafe naive resume",
    "caf na ve r sum",  # the same tokens as "Café naïve résumé"
    "\u212a\u212a\u212a is a Kelvin sign",  # lowercases to ASCII k
    "kkk is a kelvin sign",
    "İstanbul is a city",  # lowercases to i + combining dot
    "istanbul is a city",
    "the the the the cat",
    "the cat the the the",  # same multiset, different order
    "cat the the the the",
    # threshold boundary: F1 = 2*LCS/(m+n) = 0.7 exactly in rationals
    "a b c d e f g h i j",
    "a b c d e f g x y z",  # LCS 7 of 10/10: F1 0.7 (not > 0.7)
    "a b c d e f g h x y z",  # LCS 8 of 10/11
    "p q r s t u v w",  # 8 tokens
    "p q r s t u v x1 x2 x3 x4 x5",  # LCS 7 of 8/12: 0.7
    "p q r s t u v x1 x2 x3 x4",  # LCS 7 of 8/11: 0.737
    " ".join(f"w{i}" for i in range(20)),
    " ".join(f"w{i}" for i in range(14)) + " " + " ".join(f"z{i}" for i in range(6)),  # 14 of 20/20
]


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.7, 0.7 + 1e-12, 0.9, 1.0])
def test_adversarial_cases(threshold):
    for refs in ([], ADVERSARIAL[:3], ["hello"]):
        for cands in (ADVERSARIAL, ADVERSARIAL[::-1]):
            expected = reference_keep(cands, refs, threshold)
            assert streaming_keep(cands, refs, threshold) == expected, (threshold, refs)
            assert novelty_keep(cands, refs, threshold) == expected


def test_threshold_boundary_is_strict():
    pairs = [("a b c d e f g h i j", "a b c d e f g x y z"),
             ("p q r s t u v w", "p q r s t u v x1 x2 x3 x4 x5")]
    for a, b in pairs:
        f1 = SCORER.score(a, b)["rougeL"].fmeasure
        assert f1 == pytest.approx(0.7)
        assert rouge_l_f1(rouge_tokens(a), rouge_tokens(b)) == f1
        verdict = RougeNovelty([a], 0.7)(b)
        assert verdict == ("rouge_similar" if f1 > 0.7 else None)


def test_tokens_match_rouge_score():
    texts = ADVERSARIAL + ["Ünïcödé ǅ ß ﬁ x²  tab\there\nnew-line", "ＡＢＣ full width", "Ⅻ roman"]
    for text in texts:
        assert rouge_tokens(text) == SCORER._tokenizer.tokenize(text)


def random_text(rng, vocab, n_max=25):
    return " ".join(rng.choices(vocab, k=rng.randint(0, n_max)))


def test_f1_is_bitwise_rouge_score():
    rng = random.Random(1)
    vocab = list("abcdefgh")
    for _ in range(2000):
        a, b = random_text(rng, vocab), random_text(rng, vocab)
        assert rouge_l_f1(rouge_tokens(a), rouge_tokens(b)) == SCORER.score(a, b)["rougeL"].fmeasure


def test_pruning_never_skips_a_pair_above_threshold():
    """One reference, one candidate: dropped iff rouge_score's F1 > threshold."""
    rng = random.Random(2)
    for trial in range(3000):
        vocab = [f"t{i}" for i in range(rng.randint(2, 12))]
        ref = random_text(rng, vocab)
        words = ref.split()  # a mutated copy, so many pairs land near the threshold
        for _ in range(rng.randint(0, 6)):
            if words and rng.random() < 0.5:
                del words[rng.randrange(len(words))]
            else:
                words.insert(rng.randint(0, len(words)), rng.choice(vocab))
        cand = " ".join(words)
        threshold = rng.choice([0.0, 0.3, 0.5, 0.7, 0.75, 0.8, 0.9, rng.random()])
        f1 = SCORER.score(ref, cand)["rougeL"].fmeasure
        novelty = RougeNovelty([ref], threshold, corpus=[cand] if trial % 2 else None)
        assert novelty(cand) == ("rouge_similar" if f1 > threshold else None), (ref, cand, threshold)


def test_random_sequences_match_reference():
    rng = random.Random(3)
    for _ in range(40):
        vocab = [f"t{i}" for i in range(rng.randint(3, 15))]
        texts = [random_text(rng, vocab, 15) for _ in range(60)]
        threshold = rng.choice([0.5, 0.7, 0.8])
        expected = reference_keep(texts[10:], texts[:10], threshold)
        assert streaming_keep(texts[10:], texts[:10], threshold) == expected
        assert novelty_keep(texts[10:], texts[:10], threshold) == expected


def test_reranking_and_rebuilding_the_index_keep_verdicts(monkeypatch, alpaca):
    """Without a corpus the ranks are recomputed at 4, 8, 16, ... references here."""
    monkeypatch.setattr(dedup, "RERANK_START", 4)
    real, seeds = alpaca
    rng = random.Random(5)
    vocab = " ".join(real[:200]).split()
    candidates = real[:150] + [perturb(rng.choice(real[:150]), rng, vocab) for _ in range(60)]
    rng.shuffle(candidates)
    assert streaming_keep(candidates, seeds[:3]) == reference_keep(candidates, seeds[:3])
    for _ in range(20):
        vocab = [f"t{i}" for i in range(rng.randint(3, 15))]
        texts = [random_text(rng, vocab, 15) for _ in range(60)]
        assert streaming_keep(texts, []) == reference_keep(texts, [])


def test_vocabulary_past_one_character_per_token(monkeypatch):
    """Past STR_CAPACITY token ids, texts are compared as int lists, with the same verdicts."""
    monkeypatch.setattr(dedup, "STR_CAPACITY", 3)
    rng = random.Random(4)
    vocab = [f"t{i}" for i in range(10)]
    texts = [random_text(rng, vocab, 12) for _ in range(80)]
    assert streaming_keep(texts, []) == reference_keep(texts, [])


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError):
        RougeNovelty([], -0.1)
