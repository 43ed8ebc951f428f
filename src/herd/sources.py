"""Seed tasks and topics read from files in the formats users have.

Seed formats: Self-Instruct JSONL (instruction, instances[{input, output}]),
Alpaca JSON (a list of {instruction, input, output}), generic JSONL or parquet
with instruction/input/output fields, and Hugging Face datasets (`hf`: a Hub
dataset name or a local dataset folder, read with `datasets.load_dataset`, its
columns mapped onto instruction/input/output). Topic formats: a text file, one
title a line, or a JSON object mapping titles to labels (Wikipedia vital articles).
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


HF_COLUMNS = {"instruction": "instruction", "input": "input", "output": "output"}
HF_SHUFFLE_SEED = 0  # fixed: a sampled seed set does not change with the run's seed


def is_local(spec: dict) -> bool:
    """Whether a seed_tasks entry is a file or folder on this machine (not a Hub dataset name).

    Local entries are rule inputs; Hub datasets are fetched by the jobs that read them."""
    return spec.get("format") != "hf" or Path(spec["path"]).exists()


def load_hf(path: str | Path, source: str, limit: int | None = None, *, name: str | None = None,
            split: str = "train", columns: dict | None = None, data_files=None,
            shuffle: bool = False) -> list[Seed]:
    """Seeds of a Hugging Face dataset: a Hub name, a local dataset folder or a data file.

    `columns` maps instruction/input/output onto the dataset's columns (a missing input
    or output column reads as empty); `shuffle` samples `limit` rows at random (fixed
    seed) instead of taking the first ones, for large mixtures ordered by task."""
    import datasets

    where = f"{path}{f' ({name})' if name else ''} [{split}]"
    mapping = {**HF_COLUMNS, **(columns or {})}
    local = Path(path)
    kwargs = {"name": name, "data_files": data_files}
    if local.is_file():  # a single data file: its builder from the suffix
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(local.suffix)
        if builder is None:
            raise SourceError(f"{path}: format hf reads .json/.jsonl/.parquet/.csv files or dataset folders")
        target, kwargs["data_files"] = builder, str(local)
    else:
        target = str(path)
    sliced = split if shuffle or not limit or "[" in split else f"{split}[:{limit}]"
    try:
        ds = datasets.load_dataset(target, split=sliced, **{k: v for k, v in kwargs.items() if v is not None})
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise SourceError(f"cannot load Hugging Face dataset {where}: {exc}") from exc
    if mapping["instruction"] not in ds.column_names:
        raise SourceError(f"{where}: no column {mapping['instruction']!r} for the instruction "
                          f"(columns: {ds.column_names}); map it with `columns: {{instruction: ...}}`")
    for field in ("input", "output"):
        if field in (columns or {}) and mapping[field] not in ds.column_names:
            raise SourceError(f"{where}: no column {mapping[field]!r} for the {field} (columns: {ds.column_names})")
    if shuffle:
        ds = ds.shuffle(seed=HF_SHUFFLE_SEED)
    if limit and len(ds) > limit:
        ds = ds.select(range(limit))
    wanted = [c for c in {mapping[f] for f in HF_COLUMNS} if c in ds.column_names]
    seeds = []
    for i, rec in enumerate(ds.select_columns(wanted), 1):
        seeds.append(Seed(_require(rec, mapping["instruction"], f"{where}: record {i}"),
                          str(rec.get(mapping["input"]) or ""), str(rec.get(mapping["output"]) or ""), source))
    if not seeds:
        raise SourceError(f"{where}: no seed tasks")
    return seeds


def load_spec(spec: dict) -> list[Seed]:
    """The seeds of one validated `seed_tasks` entry."""
    if spec["format"] == "hf":
        return load_hf(spec["path"], spec["source"], spec.get("limit"), name=spec.get("name"),
                       split=spec.get("split", "train"), columns=spec.get("columns"),
                       data_files=spec.get("data_files"), shuffle=spec.get("shuffle", False))
    return load_seeds(spec["path"], spec["format"], spec["source"], spec.get("limit"))


def load_seeds(path: str | Path, fmt: str, source: str, limit: int | None = None) -> list[Seed]:
    """Seed tasks of one file, in file order (the first `limit` when given)."""
    if fmt == "hf":
        return load_hf(path, source, limit)
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
    elif fmt in ("alpaca", "jsonl", "parquet"):
        if fmt == "parquet":
            import pandas as pd

            records = pd.read_parquet(path).fillna("").to_dict("records")
        elif fmt == "alpaca":
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
        raise SourceError(f"unknown seed format {fmt!r} for {path}: use selfinstruct, alpaca, jsonl, parquet or hf")
    if not seeds:
        raise SourceError(f"{path}: no seed tasks")
    return seeds[:limit] if limit else seeds


def load_seed_tasks(specs: list[dict], use: str = "examples") -> list[Seed]:
    """All seeds of the configured `seed_tasks` entries with the given use."""
    return [seed for spec in specs if spec["use"] == use for seed in load_spec(spec)]


def seed_rows(specs: list[dict], use: str) -> list[dict]:
    """Seeds used as data: `reanswer` rows (the teacher answers them) or `passthrough`
    rows (kept with their own outputs), with stable ids and their source label."""
    rows = []
    for spec in specs:
        if spec["use"] != use:
            continue
        for i, seed in enumerate(load_spec(spec)):
            text = f"{seed.instruction.strip()}\n\n{seed.input.strip()}" if seed.input.strip() else seed.instruction.strip()
            row = {"id": f"seed-{spec['source']}-{i:07d}", "instruction": text, "instruction_source": spec["source"]}
            if use == "passthrough":
                if not seed.output.strip():
                    raise SourceError(f"{spec['path']}: record {i + 1} has no output to pass through")
                row["response"] = seed.output.strip()
            rows.append(row)
    return rows


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
