"""The distilled dataset in LaMini's schema, split into train and validation."""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from pathlib import Path

import pandas as pd

from herd.io import atomic_path, write_jsonl
from herd.rng import derive_seed

log = logging.getLogger(__name__)

COLUMNS = ["instruction", "response", "instruction_source"]


def split(rows: list[dict], validation_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic split by a hash of each row's id; at least one row each side when possible."""
    if not rows:
        raise ValueError("the dataset is empty: no instruction got a response")
    ranked = sorted(rows, key=lambda r: (derive_seed(seed, "split", r["id"]), r["id"]))
    n_val = round(len(ranked) * validation_fraction)
    n_val = min(max(n_val, 1), len(ranked) - 1) if len(ranked) > 1 else 0
    val = sorted(ranked[:n_val], key=lambda r: r["id"])
    train = sorted(ranked[n_val:], key=lambda r: r["id"])
    return train, val


def clean(rows: list[dict], drop_truncated: bool = False) -> tuple[list[dict], dict]:
    kept, dropped = [], Counter()
    for r in rows:
        if not r["response"].strip():
            dropped["empty_response"] += 1
        elif drop_truncated and r.get("finish_reason") == "length":
            dropped["truncated_response"] += 1
        else:
            kept.append(r)
    return kept, dict(dropped)


def write_split(rows: list[dict], parquet: Path, jsonl: Path) -> None:
    frame = pd.DataFrame([{c: r[c] for c in ["id", *COLUMNS]} for r in rows], columns=["id", *COLUMNS])
    with atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    write_jsonl(jsonl, ({c: r[c] for c in ["id", *COLUMNS]} for r in rows))


def _length_table(rows: list[dict]) -> list[str]:
    """Words per instruction and response, by source: mean, median, max."""
    lines = ["| instruction_source | rows | instruction words (mean / median / max) | response words (mean / median / max) |",
             "|---|---|---|---|"]
    for src in sorted({r["instruction_source"] for r in rows}):
        part = [r for r in rows if r["instruction_source"] == src]
        cells = []
        for key in ("instruction", "response"):
            n = [len(r[key].split()) for r in part]
            cells.append(f"{statistics.fmean(n):.1f} / {statistics.median(n):g} / {max(n)}")
        lines.append(f"| {src} | {len(part)} | {cells[0]} | {cells[1]} |")
    return lines


def card(train: list[dict], val: list[dict], dropped: dict, settings: dict,
         filter_stats: dict, licences: dict) -> str:
    """A dataset card in Markdown: sizes, sources, lengths, filters, teacher, licences."""
    rows = train + val
    lines = [
        "# herd distilled instruction dataset", "",
        f"Rows: {len(train)} train, {len(val)} validation. Columns: {', '.join(COLUMNS)}.", "",
        "## Sources and lengths", "", *_length_table(rows), "",
        "## Filters", "",
        f"Generated instructions: {filter_stats['input']}, kept {filter_stats['kept']}, "
        f"dropped {filter_stats['dropped']}.", "",
        "| reason | dropped |", "|---|---|",
        *[f"| {r} | {n} |" for r, n in sorted(filter_stats["dropped_by_reason"].items())], "",
        f"Dropped while assembling (responses): {dropped or 'none'}.", "",
        "## Teacher and decoding", "", "```", *[f"{k}: {v}" for k, v in sorted(settings.items())], "```", "",
        "## Licences of the inputs", "",
        "| seed source | licence |", "|---|---|", *[f"| {s} | {lic} |" for s, lic in sorted(licences.items())], "",
        "Generated text also carries the teacher model's terms of use.", "",
        "## Loading", "",
        "`datasets.load_dataset(\"parquet\", data_files={\"train\": \"train.parquet\", "
        "\"validation\": \"validation.parquet\"})`", "",
    ]
    return "\n".join(lines)
