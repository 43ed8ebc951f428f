"""Self-Instruct / Alpaca filters as small steps; every drop has a reason.

Each step takes an instruction and returns None (keep), a reason string, or a
`Drop` (a reason with details for the exclusion record). The novelty steps
(ROUGE-L, and optionally sentence embeddings) are stateful: a candidate is
compared with the seeds and with every instruction kept before it, in order, as
Self-Instruct does. They `check` a candidate and `add` it once every step kept it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from herd import sources
from herd.dedup import RougeNovelty, ShardedRougeNovelty, normalize
from herd.embeddings import DEFAULT_EMBEDDER, EMBED_BLOCK, best_match
from herd.prompts import format_seed

log = logging.getLogger(__name__)

DEFAULT_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to", "video", "audio", "music",
    "flowchart", "diagram",
)

@dataclass(frozen=True)
class Drop:
    """A drop with details that go into the exclusion record (e.g. the nearest kept text)."""

    reason: str
    detail: dict = field(default_factory=dict)


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
        key = normalize(text)
        if key in self.seen:
            return "exact_duplicate"
        self.seen.add(key)
        return None


class EmbeddingNovelty:
    """Drop a candidate whose embedding cosine with any reference exceeds `threshold`.

    References are the seeds plus every instruction kept so far, in order: the same
    sequential semantics as RougeNovelty, with sentence embeddings (the packaged
    all-MiniLM-L6-v2 by default) instead of ROUGE-L, so paraphrases with few words in
    common are caught too. The drop's record names the nearest reference and the score.

    Embeddings are normalised, so cosine is a dot product. `prepare(texts)` embeds the
    candidates in batches before the run (apply_filters calls it); then each block of
    EMBED_BLOCK upcoming candidates is scored against all references with one matrix
    product, and a candidate meets the few references added since its block began in a
    small one. A text that was not prepared is embedded on its own. The model is loaded
    on first use: building the step costs nothing.
    """

    reason = "embedding_similar"

    def __init__(self, references: list[str], threshold: float = 0.9, model: str = DEFAULT_EMBEDDER,
                 *, batch_size: int = 128, block: int = EMBED_BLOCK):
        if not -1 <= threshold <= 1:
            raise ValueError(f"embedding threshold is a cosine in [-1, 1], got {threshold}")
        self.threshold = threshold
        self.model = model
        self.batch_size = batch_size
        self.block = block
        self._encoder = None
        self._ref_texts: list[str] = list(dict.fromkeys(references))
        self._refs: np.ndarray | None = None  # rows [0, _n) are the references' vectors
        self._n = 0
        self._vectors = np.zeros((0, 0), np.float32)  # prepared candidates, one row per distinct text
        self._uid: dict[str, int] = {}
        self._positions: dict[int, list[int]] = {}  # distinct text -> its positions in the prepared order
        self._order: list[int] = []
        self._cursor = 0  # prepared position of the last check
        self._scores: dict[int, tuple[float, int]] = {}  # this block: uid -> best (score, reference) of [0, _frozen)
        self._frozen = 0
        self._pending = None  # (text, vector) of the last check
        self.seconds_embedding = 0.0

    def _encode(self, texts: list[str]) -> np.ndarray:
        import time

        from herd import embeddings

        if self._encoder is None:
            self._encoder = embeddings.load_embedder(self.model)
        start = time.perf_counter()
        vectors = embeddings.encode(self._encoder, texts, self.batch_size)
        self.seconds_embedding += time.perf_counter() - start
        return vectors

    def _ensure_refs(self) -> None:
        if self._refs is None:
            vectors = self._encode(self._ref_texts)
            self._n = len(vectors)
            self._refs = np.zeros((max(1024, 2 * self._n), vectors.shape[1]), np.float32)
            self._refs[: self._n] = vectors

    def prepare(self, texts: list[str]) -> None:
        """Embed the candidates to come (in their order) in batches."""
        self._ensure_refs()
        self._uid = {}
        self._order = [self._uid.setdefault(t, len(self._uid)) for t in texts]
        self._positions = {}
        for pos, uid in enumerate(self._order):
            self._positions.setdefault(uid, []).append(pos)
        self._vectors = self._encode(list(self._uid))
        self._cursor, self._scores, self._frozen = 0, {}, 0

    def _block_scores(self, uid: int) -> tuple[float, int]:
        """Best (score, reference) of a prepared text among references [0, _frozen); a new
        block from the text's next prepared position when it is not in the current one."""
        cached = self._scores.get(uid)
        if cached is not None:
            return cached
        import bisect

        positions = self._positions[uid]
        k = bisect.bisect_left(positions, self._cursor)
        if k < len(positions):
            self._cursor = positions[k]
            uids = list(dict.fromkeys(self._order[self._cursor:self._cursor + self.block]))
        else:  # checked again out of order: a block of its own
            uids = [uid]
        best, arg = best_match(self._refs[: self._n], self._vectors[uids])
        self._scores = {u: (float(b), int(a)) for u, b, a in zip(uids, best, arg)}
        self._frozen = self._n
        return self._scores[uid]

    def check(self, text: str) -> Drop | None:
        """A Drop naming the nearest reference when `text` is too similar; references unchanged."""
        self._ensure_refs()
        uid = self._uid.get(text)
        if uid is None:
            vector = self._encode([text])[0]
            best, arg, since = -np.inf, -1, 0
        else:
            vector = self._vectors[uid]
            (best, arg), since = self._block_scores(uid), self._frozen
        if self._n > since:  # references added after the block's product
            sims = self._refs[since:self._n] @ vector
            k = int(sims.argmax())
            if sims[k] > best:
                best, arg = float(sims[k]), since + k
        self._pending = (text, vector)
        if best > self.threshold:
            return Drop(self.reason, {"nearest": self._ref_texts[arg], "similarity": round(float(best), 4)})
        return None

    def add(self, text: str) -> None:
        """Make a kept `text` a reference."""
        self._ensure_refs()
        pending, self._pending = self._pending, None
        vector = pending[1] if pending is not None and pending[0] == text else self._encode([text])[0]
        if self._n == len(self._refs):
            self._refs = np.concatenate([self._refs, np.zeros_like(self._refs)])
        self._refs[self._n] = vector
        self._n += 1
        self._ref_texts.append(text)

    def __call__(self, text: str) -> Drop | None:
        verdict = self.check(text)
        if verdict is None:
            self.add(text)
        return verdict


def build_steps(cfg: dict, seed_instructions: list[str]) -> list:
    """The configured steps in order; the embedding step (last, the costliest) only when
    `embedding_threshold` is set. With `rouge_workers` > 1 the ROUGE-L step is
    ShardedRougeNovelty in that many processes: the same verdicts as RougeNovelty."""
    workers = cfg.get("rouge_workers", 1)
    steps = [
        WordCount(cfg["min_words"], cfg["max_words"]),
        Blacklist(tuple(cfg["blacklist"])),
        ProgramPrefix(),
        LeadingChar(),
        ExactDuplicate(),
        ShardedRougeNovelty(seed_instructions, cfg["rouge_threshold"], workers) if workers > 1
        else RougeNovelty(seed_instructions, cfg["rouge_threshold"]),
    ]
    if cfg.get("embedding_threshold") is not None:
        steps.append(EmbeddingNovelty(seed_instructions, cfg["embedding_threshold"],
                                      cfg.get("embedding_model", DEFAULT_EMBEDDER)))
    return steps


def _verdict(steps: list, text: str):
    """The first drop of `text` among `steps` (learning steps are only checked), or None."""
    for step in steps:
        verdict = step.check(text) if hasattr(step, "add") else step(text)
        if verdict:
            return verdict
    return None


def apply_filters(records: list[dict], steps: list) -> tuple[list[dict], list[dict], dict]:
    """Run records through the steps in order; return (kept, excluded, stats).

    A record is kept when no step drops it; then every step that learns from kept
    records (`add`: the novelty steps) adds it. The steps before the first such step do
    not depend on later verdicts, so they run over all records first, and the later
    steps that batch their work (`prepare`: embeddings) are handed the survivors.
    """
    texts = [rec["instruction"].strip() for rec in records]
    split = next((i for i, step in enumerate(steps) if hasattr(step, "add")), len(steps))
    early, late = steps[:split], steps[split:]
    verdicts = [_verdict(early, text) for text in texts]
    survivors = [text for text, verdict in zip(texts, verdicts) if not verdict]
    for step in late:
        if hasattr(step, "prepare"):
            step.prepare(survivors)
    learners = [step for step in late if hasattr(step, "add")]
    kept, excluded = [], []
    reasons: Counter = Counter()
    for rec, text, verdict in zip(records, texts, verdicts):
        if not verdict:
            verdict = _verdict(late, text)
        if not verdict:
            for step in learners:
                step.add(text)
            kept.append({**rec, "instruction": text})
            continue
        drop = verdict if isinstance(verdict, Drop) else Drop(verdict)
        reasons[drop.reason] += 1
        excluded.append({**rec, "reason": drop.reason, **drop.detail})
    stats = {
        "input": len(records),
        "kept": len(kept),
        "dropped": len(excluded),
        "dropped_by_reason": dict(sorted(reasons.items())),
    }
    return kept, excluded, stats


def seed_references(seed_tasks: list[dict]) -> list[str]:
    """The novelty steps' references: each seed (of the `seed_tasks` entries) as an instruction
    and as shown to the teacher (instruction:input), so that a copied seed is caught with or
    without its input; sorted, without repeats."""
    return sorted({text for s in sources.load_seed_tasks(seed_tasks)
                   for text in (s.instruction, format_seed(s.instruction, s.input))})


def run_filter(records: list[dict], cfg: dict, seeds: list[str], *, workers: int, threads: int,
               shards: int) -> tuple[list[dict], list[dict], dict, list]:
    """Filter the generated `records` (taken in order of their id) with the steps of `cfg`
    (the filter config); return (kept, excluded, stats, steps). `workers` processes run the
    ROUGE-L step, `threads` the embedding model. Raises ValueError when none of the records of
    `shards` generation shards survived; no shard at all is a run of re-answered seeds only,
    where nothing to keep is the result."""
    records = sorted(records, key=lambda r: r["id"])
    steps = build_steps({**cfg, "rouge_workers": workers}, seeds)
    if cfg.get("embedding_threshold") is not None:
        import torch

        torch.set_num_threads(threads)
    log.info("filter: steps %s", [type(step).__name__ for step in steps])
    kept, excluded, stats = apply_filters(records, steps)
    if not kept and shards:
        raise ValueError(f"filter: none of {len(records)} instructions generated by {shards} "
                         f"shards (results/instructions/) survived: {stats['dropped_by_reason']}")
    return kept, excluded, stats, steps
