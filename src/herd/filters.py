"""Self-Instruct / Alpaca filters as small steps; every drop has a reason.

Each step takes an instruction and returns None (keep) or a reason string.
The ROUGE-L novelty step is stateful: a candidate is compared with the seeds
and with every instruction kept before it, in order, as Self-Instruct does.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from dataclasses import dataclass

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel, LCSseq

DEFAULT_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to", "video", "audio", "music",
    "flowchart", "diagram",
)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenisation (`rouge_score.tokenize.tokenize`, no stemmer).

    Python's full-Unicode `str.lower()` first, then every run of characters other
    than ASCII a-z/0-9 becomes a space, then split. So non-ASCII letters are
    separators ("café" -> ["caf"], "naïve" -> ["na", "ve"]), while a character
    whose lowercase is ASCII counts as that letter (the Kelvin sign "K" -> "k").
    rouge_score's final VALID_TOKEN check can never drop a token left by this.
    """
    return _NON_ALNUM.sub(" ", text.lower()).split()


def _f1(lcs: int, m: int, n: int) -> float:
    """rouge_score's `_score_lcs` fmeasure, with the same float operations."""
    if lcs == 0:
        return 0.0
    p, r = lcs / m, lcs / n
    return 2 * p * r / (p + r)


def rouge_l_f1(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists, bit-for-bit rouge_score's fmeasure (symmetric)."""
    if not a or not b:
        return 0.0
    return _f1(LCSseq.similarity(a, b), len(a), len(b))


@dataclass
class WordCount:
    min_words: int = 4  # drop 3 words or fewer
    max_words: int = 150

    def __call__(self, text: str) -> str | None:
        n = len(text.split())
        if n < self.min_words:
            return "too_short"
        if n > self.max_words:
            return "too_long"
        return None


@dataclass
class Blacklist:
    words: tuple[str, ...] = DEFAULT_BLACKLIST

    def __post_init__(self):
        alternatives = "|".join(re.escape(w) for w in sorted(self.words, key=len, reverse=True))
        self._pattern = re.compile(rf"\b({alternatives})\b", re.IGNORECASE)

    def __call__(self, text: str) -> str | None:
        m = self._pattern.search(text)
        return f"blacklist:{m.group(1).lower()}" if m else None


@dataclass
class ProgramPrefix:
    def __call__(self, text: str) -> str | None:
        return "write_a_program" if text.lower().startswith("write a program") else None


@dataclass
class LeadingChar:
    def __call__(self, text: str) -> str | None:
        first = text[:1]
        if not first:
            return "empty"
        if not first.isascii():
            return "leading_non_ascii"
        if not first.isalnum():
            return "leading_punctuation"
        return None


class ExactDuplicate:
    def __init__(self):
        self.seen: set[str] = set()

    def __call__(self, text: str) -> str | None:
        key = " ".join(text.lower().split())
        if key in self.seen:
            return "exact_duplicate"
        self.seen.add(key)
        return None


FLOAT_MARGIN = 1e-9  # bounds and prefilters are loosened by this, so rounding never prunes a match
POSITION_BITS = 24  # a posting packs (reference index << POSITION_BITS) | element position
POSITION_MASK = (1 << POSITION_BITS) - 1
SURROGATE_START, SURROGATE_SPAN = 0xD800, 0x800  # code points a Python str cannot carry alone
STR_CAPACITY = 0x110000 - SURROGATE_SPAN  # token ids that fit one character each
RANK_SCALE = 1 << 40  # element rank = corpus frequency * RANK_SCALE - first-seen order


class RougeNovelty:
    """Drop a candidate whose ROUGE-L F1 with any reference exceeds `threshold`.

    References are the seeds plus every instruction kept so far, as in
    Self-Instruct and Alpaca: candidates in order, each compared with all of
    them, dropped when any F1 > threshold. The kept set is exactly that
    algorithm's; only pairs that provably cannot exceed the threshold are
    skipped, and the F1 of the others is computed with rouge_score's formula.

    Pruning (F1 = 2*LCS/(m+n) <= 2*I/(m+n), I = multiset intersection of tokens):
    - tokens become multiset elements (the k-th repeat of a token is its own
      element), sorted rarest first by a fixed global rank;
    - prefix filter: a pair needs I >= need(m, n) = floor(t*(m+n)/2) + 1, and then
      the first |x| - need + 1 elements of both sides share an element, so each
      reference is indexed (inverted index) under its prefix elements only and a
      candidate looks up its own prefix;
    - positional filter: if the first shared element sits at positions i, j,
      I <= 1 + min(m-1-i, n-1-j); this also enforces the length bound
      2*min(m, n)/(m+n) > t;
    - survivors are verified in C by rapidfuzz (Indel normalized similarity
      = 2*LCS/(m+n), cut a hair below t) and hits re-scored exactly.
    All bounds use t - FLOAT_MARGIN, so float rounding can only keep extra pairs.

    `corpus` (optional) primes the rarity ranks with token counts of texts to
    come (e.g. all candidates); it speeds things up and never changes verdicts.
    Elements first seen later rank as rarer than all primed ones, newest first.
    """

    def __init__(self, references: list[str], threshold: float = 0.7, *, corpus=None):
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        self._cut = max(0.0, threshold - FLOAT_MARGIN)
        self._vocab: dict[str, int] = {}
        self._rank: dict = {}  # element -> sort key, rarest first
        self._prefixes: dict[int, int] = {}
        self._postings: dict = {}  # element -> array of packed (reference, position)
        self._codes: list = []  # references, one character per token
        self._lengths = np.zeros(1024, dtype=np.int64)
        self.pairs_verified = 0  # pairs that reached the LCS check
        if corpus is not None:
            counts = Counter(e for text in corpus for e in self._elements(self._token_ids(text)))
            for order, (element, count) in enumerate(counts.items()):
                self._rank[element] = count * RANK_SCALE - order
        for text in references:
            self._add(*self._encode(text))

    def __call__(self, text: str) -> str | None:
        code, elements = self._encode(text)
        if self._is_similar(code, elements):
            return "rouge_similar"
        self._add(code, elements)
        return None

    def _token_ids(self, text: str) -> list[int]:
        vocab = self._vocab
        return [vocab.setdefault(tok, len(vocab)) for tok in rouge_tokens(text)]

    @staticmethod
    def _elements(ids: list[int]) -> list:
        """Token ids -> multiset elements: a token id, or (id, k) for its k-th repeat."""
        seen: dict[int, int] = {}
        out = []
        for t in ids:
            k = seen.get(t, 0)
            seen[t] = k + 1
            out.append(t if k == 0 else (t, k))
        return out

    def _encode(self, text: str):
        """Text -> (token string for rapidfuzz, elements sorted rarest first)."""
        ids = self._token_ids(text)
        points = [i + SURROGATE_SPAN if i >= SURROGATE_START else i for i in ids]
        # past STR_CAPACITY tokens: a list of ints, which rapidfuzz compares like code points
        code = "".join(map(chr, points)) if len(self._vocab) <= STR_CAPACITY else points
        rank = self._rank
        elements = self._elements(ids)
        for e in elements:
            if e not in rank:
                rank[e] = -len(rank)
        elements.sort(key=rank.__getitem__)
        return code, elements

    def _need(self, m: int, n: int) -> int:
        """Smallest token overlap for which F1 of lengths m, n may exceed the threshold."""
        return math.floor(self._cut * (m + n) / 2) + 1

    def _prefix(self, m: int) -> int:
        """Prefix length for a text of m tokens: m - (least overlap over partner lengths) + 1."""
        p = self._prefixes.get(m)
        if p is None:
            # need(m, n) grows with n, so the first feasible partner length gives the least
            p = next((m - a + 1 for n in range(1, m + 1) if (a := self._need(m, n)) <= n), 0)
            self._prefixes[m] = p
        return p

    def _is_similar(self, code, elements: list) -> bool:
        m = len(code)
        hits, positions = [], []
        for i, e in enumerate(elements[: self._prefix(m)]):
            if e in self._postings:
                hits.append(self._postings[e])
                positions.append(i)
        if not hits:
            return False
        packed = np.concatenate(hits)
        i = np.repeat(positions, [len(h) for h in hits])
        ref, j = packed >> POSITION_BITS, packed & POSITION_MASK
        n = self._lengths[ref]
        overlap_bound = np.minimum(m - i, n - j)  # 1 + min(m-1-i, n-1-j)
        refs = np.unique(ref[overlap_bound >= np.floor(self._cut * (m + n) / 2) + 1])
        self.pairs_verified += len(refs)
        codes = self._codes
        choices = [codes[r] for r in refs.tolist()]
        for choice, _, _ in process.extract(code, choices, scorer=Indel.normalized_similarity,
                                            score_cutoff=self._cut, limit=None):
            if _f1(LCSseq.similarity(code, choice), m, len(choice)) > self.threshold:
                return True
        return False

    def _add(self, code, elements: list) -> None:
        m = len(code)
        if m == 0:
            return  # F1 with an empty text is 0: it can never cause a drop
        if m > POSITION_MASK:
            raise ValueError(f"text of {m} tokens is longer than {POSITION_MASK}")
        index = len(self._codes)
        self._codes.append(code)
        if index == len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
        self._lengths[index] = m
        for pos, e in enumerate(elements[: self._prefix(m)]):
            self._postings.setdefault(e, array("q")).append(index << POSITION_BITS | pos)


def novelty_keep(candidates: list[str], references: list[str], threshold: float = 0.7) -> list[bool]:
    """Keep flags of the sequential ROUGE-L novelty filter (ranks primed with all texts)."""
    novelty = RougeNovelty(references, threshold, corpus=[*references, *candidates])
    return [novelty(text) is None for text in candidates]


def build_steps(cfg: dict, seed_instructions: list[str]) -> list:
    return [
        WordCount(cfg["min_words"], cfg["max_words"]),
        Blacklist(tuple(cfg["blacklist"])),
        ProgramPrefix(),
        LeadingChar(),
        ExactDuplicate(),
        RougeNovelty(seed_instructions, cfg["rouge_threshold"]),
    ]


def apply_filters(records: list[dict], steps: list) -> tuple[list[dict], list[dict], dict]:
    """Run records through the steps in order; return (kept, excluded, stats)."""
    kept, excluded = [], []
    reasons: Counter = Counter()
    for rec in records:
        text = rec["instruction"].strip()
        reason = None
        for step in steps:
            reason = step(text)
            if reason:
                break
        if reason:
            reasons[reason] += 1
            excluded.append({**rec, "reason": reason})
        else:
            kept.append({**rec, "instruction": text})
    stats = {
        "input": len(records),
        "kept": len(kept),
        "dropped": len(excluded),
        "dropped_by_reason": dict(sorted(reasons.items())),
    }
    return kept, excluded, stats
