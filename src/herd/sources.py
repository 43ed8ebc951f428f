"""Seed tasks and topics read from files in the formats users have.

Seed formats: Self-Instruct JSONL (instruction, instances[{input, output}]),
Alpaca JSON (a list of {instruction, input, output}), and generic JSONL with
instruction/input/output fields. Topic formats: a text file, one title a line,
or a JSON object mapping titles to labels (Wikipedia vital articles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from herd.io import read_jsonl


@dataclass(frozen=True)
class Seed:
    instruction: str
    input: str
    output: str
    source: str


class SourceError(ValueError):
    pass


def _require(rec: dict, key: str, where: str) -> str:
    value = rec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{where}: missing or empty field {key!r}")
    return value


def load_seeds(path: str | Path, fmt: str, source: str) -> list[Seed]:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"seed file not found: {path}")
    seeds = []
    if fmt == "selfinstruct":
        for i, rec in enumerate(read_jsonl(path), 1):
            where = f"{path}: record {i}"
            inst = (rec.get("instances") or [{}])[0]
            seeds.append(Seed(_require(rec, "instruction", where), inst.get("input", "") or "",
                              inst.get("output", "") or "", source))
    elif fmt in ("alpaca", "jsonl"):
        if fmt == "alpaca":
            try:
                records = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(records, list):
                raise SourceError(f"{path}: an Alpaca file is a JSON list of objects")
        else:
            records = read_jsonl(path)
        for i, rec in enumerate(records, 1):
            where = f"{path}: record {i}"
            seeds.append(Seed(_require(rec, "instruction", where), rec.get("input", "") or "",
                              rec.get("output", "") or "", source))
    else:
        raise SourceError(f"unknown seed format {fmt!r} for {path}: use selfinstruct, alpaca or jsonl")
    if not seeds:
        raise SourceError(f"{path}: no seed tasks")
    return seeds


def load_topics(path: str | Path, fmt: str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"topic file not found: {path}")
    if fmt == "text":
        titles = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        titles = [t for t in titles if t and not t.startswith("#")]
    elif fmt == "json_map":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise SourceError(f"{path}: a json_map topic file is an object of title -> label")
        titles = list(data)
    else:
        raise SourceError(f"unknown topic format {fmt!r} for {path}: use text or json_map")
    return titles


def filter_topics(titles: list[str], max_words: int) -> tuple[list[str], dict]:
    """Keep distinct titles of at most `max_words` words (underscores count as spaces)."""
    kept, seen = [], set()
    dropped = {"too_many_words": 0, "duplicate": 0}
    for title in titles:
        clean = " ".join(title.replace("_", " ").split())
        if len(clean.split()) > max_words:
            dropped["too_many_words"] += 1
        elif clean.lower() in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(clean.lower())
            kept.append(clean)
    return kept, dropped
