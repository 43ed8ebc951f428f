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


def _optional(rec: dict, key: str, where: str) -> str:
    """An optional text field: absent or null reads as empty, anything but text is an error."""
    value = rec.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SourceError(f"{where}: field {key!r} is a {type(value).__name__}, not text")
    return value


def _entry(index: int | None) -> str:
    """The config key of a seed_tasks entry, for messages."""
    return "seed_tasks" if index is None else f"seed_tasks[{index}]"


def _read_text(path: Path, key: str, what: str = "file") -> str:
    """The text of a UTF-8 file; a folder, a missing file or other bytes are errors naming
    the file (and line) and the config key."""
    if path.is_dir():
        raise SourceError(f"{key}: {path} is a directory, not a {what} ({key}.path)")
    if not path.is_file():
        raise SourceError(f"{key}: {what} not found: {path} ({key}.path)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(f"{key}: {path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start}); save the file as UTF-8") from exc
    return text.removeprefix("\ufeff")  # a byte-order mark some editors write


def jsonl_records(text: str, path: Path, key: str, fmt: str) -> list[tuple[str, dict]]:
    """(where, record) of each line of a JSON Lines text; `where` names file, line and record."""
    if text.lstrip().startswith("["):  # seed records are objects: a JSONL line never opens a list
        raise SourceError(f"{key}: {path}:1: starts with '[', so it looks like an Alpaca JSON list, not the JSON "
                          f"Lines of format {fmt}; set {key}.format: alpaca")
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{key}: {path}:{lineno}: not valid JSON ({exc.msg})") from exc
        where = f"{key}: {path}:{lineno}: record {len(out) + 1}"
        if not isinstance(rec, dict):
            raise SourceError(f"{where}: a {type(rec).__name__}, not a JSON object")
        out.append((where, rec))
    return out


def _alpaca(text: str, path: Path, key: str) -> list[tuple[str, dict]]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            hint = f"; it looks like JSON Lines (one object a line): set {key}.format: jsonl or selfinstruct"
        raise SourceError(f"{key}: {path}:{exc.lineno}: not valid JSON ({exc.msg}){hint}") from exc
    if not isinstance(records, list):
        raise SourceError(f"{key}: {path}: an Alpaca file is a JSON list of objects, not a "
                          f"{type(records).__name__} ({key}.format: alpaca)")
    out = []
    for i, rec in enumerate(records, 1):
        where = f"{key}: {path}: record {i}"
        if not isinstance(rec, dict):
            raise SourceError(f"{where}: a {type(rec).__name__}, not a JSON object")
        out.append((where, rec))
    return out


def _check_lengths(seed: Seed, where: str, max_chars: dict | None, key: str) -> None:
    """A seed longer than the configured limits is an error: a runaway record (a whole file in
    one field) would otherwise reach the teacher's prompts and the filters."""
    for field, limit in (max_chars or {}).items():
        n = len(getattr(seed, field))
        if limit is not None and n > limit:
            raise SourceError(f"{where}: the {field} has {n:,} characters, over {key}.max_chars.{field} "
                              f"({limit:,}); fix the record or raise the limit")


HF_COLUMNS = {"instruction": "instruction", "input": "input", "output": "output"}
HF_SHUFFLE_SEED = 0  # fixed: a sampled seed set does not change with the run's seed


def is_local(spec: dict) -> bool:
    """Whether a seed_tasks entry is a file or folder on this machine (not a Hub dataset name).

    Local entries are rule inputs; Hub datasets are fetched by the jobs that read them."""
    return spec.get("format") != "hf" or Path(spec["path"]).exists()


def load_hf(path: str | Path, source: str, limit: int | None = None, *, name: str | None = None,
            split: str = "train", columns: dict | None = None, data_files=None,
            shuffle: bool = False, max_chars: dict | None = None, key: str = "seed_tasks") -> list[Seed]:
    """Seeds of a Hugging Face dataset: a Hub name, a local dataset folder or a data file.

    `columns` maps instruction/input/output onto the dataset's columns (a missing input
    or output column reads as empty); `shuffle` samples `limit` rows at random (fixed
    seed) instead of taking the first ones, for large mixtures ordered by task;
    `max_chars` limits the characters of each field (`key`.max_chars names the limit)."""
    import datasets

    label = f"{path}{f' ({name})' if name else ''} [{split}]"
    where = f"{key}: {label}"
    mapping = {**HF_COLUMNS, **(columns or {})}
    local = Path(path)
    kwargs = {"name": name, "data_files": data_files}
    if local.is_file():  # a single data file: its builder from the suffix
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(local.suffix)
        if builder is None:
            raise SourceError(f"{key}: {path}: format hf reads .json/.jsonl/.parquet/.csv files or dataset folders")
        target, kwargs["data_files"] = builder, str(local)
    else:
        target = str(path)
    sliced = split if shuffle or not limit or "[" in split else f"{split}[:{limit}]"
    try:
        ds = datasets.load_dataset(target, split=sliced, **{k: v for k, v in kwargs.items() if v is not None})
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise SourceError(f"{key}: cannot load Hugging Face dataset {label}: {exc}") from exc
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
        seed = Seed(_require(rec, mapping["instruction"], f"{where}: record {i}"),
                    str(rec.get(mapping["input"]) or ""), str(rec.get(mapping["output"]) or ""), source)
        _check_lengths(seed, f"{where}: record {i}", max_chars, key)
        seeds.append(seed)
    if not seeds:
        raise SourceError(f"{where}: no seed tasks")
    return seeds


def load_spec(spec: dict, index: int | None = None) -> list[Seed]:
    """The seeds of one validated `seed_tasks` entry; `index`, its place in the list, lets
    messages name the entry (seed_tasks[index])."""
    key = _entry(index)
    if spec["format"] == "hf":
        return load_hf(spec["path"], spec["source"], spec.get("limit"), name=spec.get("name"),
                       split=spec.get("split", "train"), columns=spec.get("columns"),
                       data_files=spec.get("data_files"), shuffle=spec.get("shuffle", False),
                       max_chars=spec.get("max_chars"), key=key)
    return load_seeds(spec["path"], spec["format"], spec["source"], spec.get("limit"),
                      max_chars=spec.get("max_chars"), key=key)


def load_seeds(path: str | Path, fmt: str, source: str, limit: int | None = None, *,
               max_chars: dict | None = None, key: str = "seed_tasks") -> list[Seed]:
    """Seed tasks of one file, in file order (the first `limit` when given).

    Every error names `key` (the config entry), the file, and the line or record; a seed
    with a field longer than `max_chars` allows is one."""
    if fmt == "hf":
        return load_hf(path, source, limit, max_chars=max_chars, key=key)
    path = Path(path)
    if fmt == "parquet":
        import pandas as pd

        if not path.is_file():
            _read_text(path, key)  # the error for a folder or a missing file
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow's errors name neither the file nor the entry
            raise SourceError(f"{key}: {path}: not a readable parquet file ({exc})") from exc
        records = [(f"{key}: {path}: record {i}", rec)
                   for i, rec in enumerate(frame.fillna("").to_dict("records"), 1)]
    elif fmt == "alpaca":
        records = _alpaca(_read_text(path, key), path, key)
    elif fmt in ("selfinstruct", "jsonl"):
        records = jsonl_records(_read_text(path, key), path, key, fmt)
    else:
        raise SourceError(f"{key}: unknown seed format {fmt!r} for {path}: use selfinstruct, alpaca, jsonl, "
                          "parquet or hf")
    if limit:
        records = records[:limit]
    seeds = []
    for where, rec in records:
        if fmt == "selfinstruct":  # the first instance holds the input and output
            instances = rec.get("instances") or [{}]
            if not isinstance(instances, list) or not isinstance(instances[0], dict):
                raise SourceError(f"{where}: 'instances' is a list of objects with input and output "
                                  f"(is the file Self-Instruct's format? {key}.format)")
            fields = instances[0]
        else:
            fields = rec
        seed = Seed(_require(rec, "instruction", where), _optional(fields, "input", where),
                    _optional(fields, "output", where), source)
        _check_lengths(seed, where, max_chars, key)
        seeds.append(seed)
    if not seeds:
        raise SourceError(f"{key}: {path}: no seed tasks")
    return seeds


def load_seed_tasks(specs: list[dict], use: str = "examples", *, local_only: bool = False) -> list[Seed]:
    """All seeds of the configured `seed_tasks` entries with the given use (`local_only`:
    only those on this machine, no Hub dataset). `specs` is the whole list, so that
    messages name each entry by its index."""
    return [seed for i, spec in enumerate(specs)
            if spec["use"] == use and (is_local(spec) or not local_only)
            for seed in load_spec(spec, i)]


def seed_rows(specs: list[dict], use: str) -> list[dict]:
    """Seeds used as data: `reanswer` rows (the teacher answers them) or `passthrough`
    rows (kept with their own outputs), with stable ids and their source label.

    Ids are seed-{source}-{entry}-{n}: `entry`, the position in `specs`, keeps ids unique when
    two files share a source label and lets the dataset card trace a row to its file (licence).
    The teacher is asked under `request_id`, seed-{source}-{n}, which does not move when entries
    are added or reordered: the request's sampling seed, and so its cache key, stay the same,
    and a cached answer is never paid for again."""
    rows = []
    for entry, spec in enumerate(specs):
        if spec["use"] != use:
            continue
        for i, seed in enumerate(load_spec(spec, entry)):
            text = f"{seed.instruction.strip()}\n\n{seed.input.strip()}" if seed.input.strip() else seed.instruction.strip()
            row = {"id": f"seed-{spec['source']}-{entry}-{i:07d}", "request_id": f"seed-{spec['source']}-{i:07d}",
                   "instruction": text, "instruction_source": spec["source"]}
            if use == "passthrough":
                if not seed.output.strip():
                    raise SourceError(f"{spec['path']}: record {i + 1} has no output to pass through")
                row["response"] = seed.output.strip()
            rows.append(row)
    return rows


def load_topics(path: str | Path, fmt: str, max_chars: int | None = None) -> list[str]:
    """Topic titles of a text file (a title a line, # comments) or a json_map file.

    Errors name the `topics` config key, the file and the line (or record); a title
    longer than `max_chars` (topics.max_chars) is one."""
    path = Path(path)
    if fmt not in ("text", "json_map"):
        raise SourceError(f"topics: unknown topic format {fmt!r} for {path}: use text or json_map (topics.format)")
    text = _read_text(path, "topics", "topic file")
    if fmt == "text":
        titles = [(f"topics: {path}:{n}", ln.strip()) for n, ln in enumerate(text.splitlines(), 1)]
        titles = [(where, t) for where, t in titles if t and not t.startswith("#")]
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"topics: {path}:{exc.lineno}: not valid JSON ({exc.msg}); topics.format json_map "
                              "reads one JSON object of title -> label") from exc
        if not isinstance(data, dict):
            raise SourceError(f"topics: {path}: a json_map topic file is an object of title -> label, not a "
                              f"{type(data).__name__} (topics.format)")
        titles = [(f"topics: {path}: record {n}", t) for n, t in enumerate(data, 1)]
    for where, title in titles:
        if max_chars is not None and len(title) > max_chars:
            raise SourceError(f"{where}: a title of {len(title):,} characters, over topics.max_chars ({max_chars:,})")
    return [t for _, t in titles]


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
