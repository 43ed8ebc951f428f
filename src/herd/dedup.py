"""Duplicates: the exact key (`normalize`), and Self-Instruct's ROUGE-L novelty rule at scale
(`RougeNovelty`; `ShardedRougeNovelty` reaches the same verdicts in several processes).
`rouge_tokens` and `rouge_l_f1` reproduce rouge_score's ROUGE-L F1 bit for bit."""

from __future__ import annotations

import math
import multiprocessing
import re
from array import array
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize(text: str) -> str:
    """The exact-duplicate key: lowercase, whitespace runs collapsed to one space."""
    return " ".join(text.lower().split())


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenisation (no stemmer): full-Unicode lower(), then every run
    of characters other than ASCII a-z/0-9 is a separator ("café" -> ["caf"]), while a
    character whose lowercase is ASCII counts as that letter (the Kelvin sign "K" -> "k")."""
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


FLOAT_MARGIN = 1e-9  # bounds are loosened by this, so float rounding never prunes a match
SHARED = 2  # prefixes are one element longer, and a pair must share two prefix elements
MAX_TOKENS = 0xFFFF  # a posting packs reference << 16 | longest partner it can serve
SURROGATE_START, SURROGATE_SPAN = 0xD800, 0x800  # code points a Python str cannot carry alone
STR_CAPACITY = 0x110000 - SURROGATE_SPAN  # token ids that fit one character each
RANK_SCALE = 1 << 40  # element rank = count * RANK_SCALE - first-seen order
LENGTH_BUCKET = 4  # postings of an element are grouped by reference length // this
RERANK_START = 1024  # without a corpus, re-rank at this many references, then at each doubling


class RougeNovelty:
    """Drop a candidate whose ROUGE-L F1 with any reference exceeds `threshold`.

    References are the seeds plus every instruction kept so far, as in
    Self-Instruct and Alpaca: candidates in order, each compared with all of
    them, dropped when any F1 > threshold. The kept set is exactly that
    algorithm's: a pair is skipped only when a bound proves its F1 <= threshold,
    and every other pair gets rouge_score's F1 (exact LCS from rapidfuzz's
    compiled LCSseq, one character per token; rouge_score's float formula, so
    ties at the threshold round the same way).

    The bounds are a PPJoin-style prefix filter. F1 = 2*LCS/(m+n) and LCS <= I,
    the multiset intersection of the two token lists, so a pair needs
    I >= need(m, n) = floor(t*(m+n)/2) + 1 (which implies the length bound
    2*min(m, n)/(m+n) > t). Tokens become multiset elements (the k-th repeat of
    a token is its own element), sorted rarest first by one global rank. If
    I >= need, the k-th shared element sits before position m - need + k in the
    candidate and n - need + k in the reference. With K = SHARED:
    - each reference is indexed (an inverted index) under its first
      n - least_need(n) + K elements, least_need being need's minimum over all
      partner lengths, and a candidate looks up its first m - least_need(m) + K;
    - an element shared at positions i, j counts only if
      K + min(m-1-i, n-1-j) >= need(m, n) (positional filter: postings are
      grouped by reference length for the candidate's side, and each carries
      the longest candidate it can serve for the reference's side);
    - a pair must share at least min(K, need) counted elements.
    Every bound uses t - FLOAT_MARGIN, so float rounding can only let extra
    pairs through to the exact check.

    The rank only affects speed. By default elements are ranked by how many
    texts seen so far hold them, re-ranked (and the index rebuilt) at
    RERANK_START references and at every doubling; elements first seen since
    rank as rarest. `corpus` (e.g. all candidates, as novelty_keep does) fixes
    the ranks from its counts up front instead.
    """

    def __init__(self, references: list[str], threshold: float = 0.7, *, corpus=None):
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        self._cut = max(0.0, threshold - FLOAT_MARGIN)
        self._vocab: dict[str, int] = {}
        self._order: dict = {}  # element -> first-seen order
        self._counts: Counter = Counter()  # element -> texts seen with it
        self._rank: dict = {}  # element -> sort key, rarest first; fixed between re-rankings
        self._windows: dict[int, tuple[int, int]] = {}
        self._partners: dict[tuple[int, int], int] = {}
        self._postings: dict = {}  # element -> {length: array of reference << 16 | partner}
        self._codes: list = []  # references, one character per token
        self._lengths = np.zeros(1024, dtype=np.int64)
        self._next_rerank = RERANK_START if corpus is None else math.inf
        self.pairs_verified = 0  # pairs that reached the LCS check
        if corpus is not None:
            for text in corpus:
                self._counts.update(self._sorted_elements(self._points(text)))
            self._rerank()
        for text in references:
            self._add(*self._encode(text))
        self._pending = None  # (text, code, elements) of the last check

    def check(self, text: str) -> str | None:
        """Return "rouge_similar" when `text` is too close to a reference; references stay as they are."""
        code, elements = self._encode(text)
        self._pending = (text, code, elements)
        return "rouge_similar" if self._is_similar(code, elements) else None

    def matches(self, text: str) -> list[int]:
        """Every reference whose F1 with `text` exceeds the threshold, ascending; references are
        numbered in the order they were given and added (seeds first). Like `check`, it leaves
        the references as they are and remembers the encoding for `add`."""
        code, elements = self._encode(text)
        self._pending = (text, code, elements)
        return list(self._matches(code, elements))

    def add(self, text: str) -> None:
        """Make a kept `text` a reference (reusing its encoding from `check`)."""
        pending, self._pending = self._pending, None
        self._add(*(pending[1:] if pending is not None and pending[0] == text else self._encode(text)))

    def __call__(self, text: str) -> str | None:
        reason = self.check(text)
        if reason is None:
            self.add(text)
        return reason

    def _points(self, text: str) -> list[int]:
        """Tokens -> one code point each (token ids, skipping the surrogate range)."""
        vocab = self._vocab
        ids = [vocab.setdefault(tok, len(vocab)) for tok in rouge_tokens(text)]
        if len(ids) > MAX_TOKENS:
            raise ValueError(f"text of {len(ids)} tokens is longer than {MAX_TOKENS}")
        return [i + SURROGATE_SPAN if i >= SURROGATE_START else i for i in ids]

    def _sorted_elements(self, points: list[int]) -> list:
        """Multiset elements (a token, or (token, k) for its k-th repeat), rarest first."""
        seen: dict[int, int] = {}
        elements = []
        for t in points:
            k = seen.get(t, 0)
            seen[t] = k + 1
            elements.append(t if k == 0 else (t, k))
        rank, order = self._rank, self._order
        for e in elements:
            if e not in rank:  # new: rarer than every element ranked so far, newest first
                rank[e] = -len(order)
                order[e] = len(order)
        elements.sort(key=rank.__getitem__)
        return elements

    def _encode(self, text: str):
        """Text -> (token string for rapidfuzz, elements sorted rarest first)."""
        points = self._points(text)
        # past STR_CAPACITY tokens: a list of ints, which rapidfuzz compares like code points
        code = "".join(map(chr, points)) if len(self._vocab) <= STR_CAPACITY else points
        elements = self._sorted_elements(points)
        if self._next_rerank < math.inf:
            self._counts.update(elements)
        return code, elements

    def _rerank(self) -> None:
        """Rank elements by the counts so far (rarest first) and rebuild the index with it."""
        self._rank = {e: self._counts[e] * RANK_SCALE - order for e, order in self._order.items()}
        self._postings = {}
        for index, code in enumerate(self._codes):
            points = list(map(ord, code)) if isinstance(code, str) else code
            self._index(index, len(points), self._sorted_elements(points))
        self._next_rerank *= 2

    def _need(self, m: int, n: int) -> int:
        """Least token overlap for which F1 of lengths m, n may exceed the threshold."""
        return math.floor(self._cut * (m + n) / 2) + 1

    def _window(self, m: int) -> tuple[int, int]:
        """(elements of an m-token text that are indexed or looked up, shortest partner length)."""
        w = self._windows.get(m)
        if w is None:
            # need(m, n) grows with n; the first n with need <= n is the shortest partner
            # and gives the least need over all partners
            n = next((n for n in range(1, m + 1) if self._need(m, n) <= n), None)
            w = self._windows[m] = (0, 0) if n is None else (min(m, m - self._need(m, n) + SHARED), n)
        return w

    def _max_partner(self, m: int, slack: int) -> int:
        """Longest partner n with need(m, n) <= slack + SHARED (need grows with n)."""
        key = (m, slack)
        if key not in self._partners:
            lo, hi = 0, MAX_TOKENS
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if self._need(m, mid) <= slack + SHARED else (lo, mid - 1)
            self._partners[key] = lo
        return self._partners[key]

    def _is_similar(self, code, elements: list) -> bool:
        return next(self._matches(code, elements), None) is not None

    def _matches(self, code, elements: list) -> Iterator[int]:
        """References whose F1 with the text exceeds the threshold, ascending, found lazily."""
        m = len(code)
        prefix, shortest = self._window(m)
        chunks = []
        for i, e in enumerate(elements[:prefix]):
            if by_length := self._postings.get(e):
                longest = self._max_partner(m, m - 1 - i)  # positional filter, candidate side
                lo, hi = shortest // LENGTH_BUCKET, longest // LENGTH_BUCKET
                chunks += [a for b, a in by_length.items() if lo <= b <= hi]
        if not chunks:
            return
        postings = np.concatenate(chunks)
        refs = np.sort(postings[postings & MAX_TOKENS >= m] >> 16)  # positional, reference side
        if self._need(m, shortest) >= SHARED:  # then every pair shares >= SHARED looked-up elements
            refs = refs[1:][refs[1:] == refs[:-1]]
        refs = np.unique(refs)
        if not len(refs):
            return
        self.pairs_verified += len(refs)
        codes = self._codes
        lcs = process.cdist([code], [codes[r] for r in refs.tolist()], scorer=LCSseq.similarity,
                            dtype=np.int64)[0]
        n = self._lengths[refs]
        # 2*LCS/(m+n) > t - margin keeps every pair whose rouge_score F1 > t; score those exactly
        for k in np.flatnonzero(2 * lcs > self._cut * (m + n)).tolist():
            if _f1(int(lcs[k]), m, int(n[k])) > self.threshold:
                yield int(refs[k])

    def _add(self, code, elements: list) -> None:
        m = len(code)  # an empty text (F1 0: never a match) is numbered, but never indexed
        index = len(self._codes)
        self._codes.append(code)
        if index == len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
        self._lengths[index] = m
        self._index(index, m, elements)
        if len(self._codes) >= self._next_rerank:
            self._rerank()

    def _index(self, index: int, m: int, elements: list) -> None:
        for j, e in enumerate(elements[: self._window(m)[0]]):
            posting = index << 16 | self._max_partner(m, m - 1 - j)
            self._postings.setdefault(e, {}).setdefault(m // LENGTH_BUCKET, array("q")).append(posting)


def novelty_keep(candidates: list[str], references: list[str], threshold: float = 0.7) -> list[bool]:
    """Keep flags of the sequential ROUGE-L novelty filter (ranks primed with all texts)."""
    novelty = RougeNovelty(references, threshold, corpus=[*references, *candidates])
    return [novelty(text) is None for text in candidates]


# The same filter in two phases, so that the costly one runs in many processes:
# 1. rouge_neighbours: for each candidate, the seeds and EARLIER candidates (kept or not: so
#    nothing depends on the verdicts) whose F1 with it exceeds the threshold; candidates are
#    split into shards, one per process.
# 2. resolve_kept (or ShardedRougeNovelty.check/add, between other steps): verdicts in order.

def rouge_neighbours(candidates: list[str], references: list[str], threshold: float = 0.7,
                     shard: int = 0, n_shards: int = 1) -> dict[int, list[int] | None]:
    """Phase 1 for the candidates i with i % n_shards == shard: {i: the earlier candidates
    j < i with F1(i, j) > threshold, ascending}, or {i: None} when i matches a seed; the
    candidates that match nothing are left out.

    Every candidate becomes a reference after its turn (queried only in its shard), so this
    is RougeNovelty with more references; its bounds hold for any pair, kept or not.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is not in [0, {n_shards})")
    index = RougeNovelty(references, threshold, corpus=[*references, *candidates])
    n_refs = len(references)  # reference r >= n_refs is candidate r - n_refs
    found: dict[int, list[int] | None] = {}
    for i, text in enumerate(candidates):
        if i % n_shards == shard and (refs := index.matches(text)):
            found[i] = None if refs[0] < n_refs else [r - n_refs for r in refs]
        index.add(text)
    return found


_worker_args: tuple = ()  # (candidates, references, threshold, n_shards) in a forked worker


def _set_worker_args(*args) -> None:
    global _worker_args
    _worker_args = args


def _shard_neighbours(shard: int) -> dict[int, list[int] | None]:
    candidates, references, threshold, n_shards = _worker_args
    return rouge_neighbours(candidates, references, threshold, shard, n_shards)


def sharded_neighbours(candidates: list[str], references: list[str], threshold: float = 0.7,
                       workers: int = 1, shards: int | None = None) -> dict[int, list[int] | None]:
    """rouge_neighbours of all candidates: `shards` shards (default: one per worker) run in
    `workers` processes, or in this one when workers == 1.

    Processes are forked: they inherit the texts (only the neighbours travel, pickled), and
    a script without a main guard (a Snakemake script) is not re-run in them, as it would
    be by spawn or forkserver.
    """
    shards = workers if shards is None else shards
    if workers < 1 or shards < 1:
        raise ValueError(f"workers and shards must be >= 1, got {workers} and {shards}")
    if workers == 1:
        parts = [rouge_neighbours(candidates, references, threshold, k, shards) for k in range(shards)]
    else:
        with ProcessPoolExecutor(min(workers, shards), mp_context=multiprocessing.get_context("fork"),
                                 initializer=_set_worker_args,
                                 initargs=(candidates, references, threshold, shards)) as pool:
            parts = list(pool.map(_shard_neighbours, range(shards)))
    return {i: near for part in parts for i, near in part.items()}


def _novel(near: list[int] | None, kept: list[bool]) -> bool:
    """Phase 2's rule: a candidate stays unless it matches a seed or an earlier kept candidate."""
    return near is not None and not any(kept[j] for j in near)


def resolve_kept(n: int, neighbours: dict[int, list[int] | None]) -> list[bool]:
    """Phase 2: keep flags of candidates 0..n-1 from their neighbours (rouge_neighbours).

    Equal to the sequential filter's flags, by induction on i: if both agree on the
    candidates before i, they have the same kept candidates before i, and both drop i
    exactly when a seed or one of those kept candidates has F1 > threshold with it
    (neighbours lists every earlier candidate with F1 > threshold, kept or not).
    """
    kept = [False] * n
    for i in range(n):
        kept[i] = _novel(neighbours.get(i, []), kept)
    return kept


def novelty_keep_sharded(candidates: list[str], references: list[str], threshold: float = 0.7,
                         workers: int = 1, shards: int | None = None) -> list[bool]:
    """novelty_keep's flags, with phase 1 in `workers` processes (see sharded_neighbours)."""
    return resolve_kept(len(candidates), sharded_neighbours(candidates, references, threshold, workers, shards))


class ShardedRougeNovelty:
    """RougeNovelty's verdicts, with the pair search done up front in `workers` processes.

    `prepare(texts)` (apply_filters hands it the texts that reach the novelty steps, in
    order) runs phase 1 over them. `check` and `add` then run phase 2 one text at a time:
    a text is dropped when it matches a seed or an earlier prepared text that was added, so
    that, as with RougeNovelty, a text dropped by a later step is no reference. Texts are
    checked in their prepared order (some may be skipped), each `add` after its `check`.
    """

    def __init__(self, references: list[str], threshold: float = 0.7, workers: int = 2):
        self.references = list(references)
        self.threshold = threshold
        self.workers = workers
        self._texts: list[str] = []
        self._neighbours: dict[int, list[int] | None] = {}
        self._added: list[bool] = []
        self._cursor = 0  # prepared position after the last check
        self._pending: int | None = None  # prepared position of the last check

    def prepare(self, texts: list[str]) -> None:
        """Find every prepared text's neighbours (phase 1) in `workers` processes."""
        self._texts = list(texts)
        self._neighbours = sharded_neighbours(self._texts, self.references, self.threshold, self.workers)
        self._added = [False] * len(self._texts)
        self._cursor, self._pending = 0, None

    def check(self, text: str) -> str | None:
        """Return "rouge_similar" when `text` (the next prepared one equal to it) is too close
        to a seed or to an added text."""
        p = self._cursor
        while p < len(self._texts) and self._texts[p] != text:
            p += 1
        if p == len(self._texts):
            raise ValueError(f"not among the prepared texts after position {self._cursor}: {text!r}")
        self._cursor = p + 1
        self._pending = p
        return None if _novel(self._neighbours.get(p, []), self._added) else "rouge_similar"

    def add(self, text: str) -> None:
        """Make the text of the last check a reference."""
        p, self._pending = self._pending, None
        if p is None or self._texts[p] != text:
            raise ValueError(f"add without its check: {text!r}")
        self._added[p] = True
