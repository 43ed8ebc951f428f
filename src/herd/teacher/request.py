"""What a teacher is asked and what it answers, and the cache key of a question."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Decoding:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256


@dataclass
class Request:
    messages: list[dict]
    decoding: Decoding
    seed: int


@dataclass
class Answer:
    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def failed(error: str) -> Answer:
    """The answer of a request that got none: recorded, never turned into an empty text."""
    return Answer(text=None, error=error)


def request_key(backend: str, model: str, req: Request) -> str:
    """The cache key: a hash of everything that makes the answer (never an API key)."""
    payload = {
        "backend": backend,
        "model": model,
        "messages": req.messages,
        "decoding": asdict(req.decoding),
        "seed": req.seed,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
