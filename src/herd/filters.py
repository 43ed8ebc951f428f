"""Self-Instruct / Alpaca filters as small steps; every drop has a reason.

Each step takes an instruction and returns None (keep) or a reason string.
The ROUGE-L novelty step is stateful: a candidate is compared with the seeds
and with every instruction kept before it, in order, as Self-Instruct does.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from rapidfuzz.distance import LCSseq

DEFAULT_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to", "video", "audio", "music",
    "flowchart", "diagram",
)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenisation: lowercase, non-alphanumerics to spaces, split."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def rouge_l_f1(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return 0.0
    lcs = LCSseq.similarity(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


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


class RougeNovelty:
    """Drop a candidate whose ROUGE-L F1 with any reference exceeds `threshold`.

    References are the seeds plus every instruction kept so far. A pair is
    skipped only when the length bound 2*min(m, n)/(m + n), an upper bound of
    the F1, cannot exceed the threshold, so the kept set is exactly the
    sequential algorithm's.
    """

    def __init__(self, references: list[str], threshold: float = 0.7):
        self.threshold = threshold
        self.refs: list[list[str]] = [t for t in map(rouge_tokens, references) if t]

    def __call__(self, text: str) -> str | None:
        cand = rouge_tokens(text)
        m = len(cand)
        for ref in self.refs:
            n = len(ref)
            if 2 * min(m, n) / (m + n) <= self.threshold:
                continue
            if rouge_l_f1(cand, ref) > self.threshold:
                return "rouge_similar"
        self.refs.append(cand)
        return None


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
