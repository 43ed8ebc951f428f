"""The distilled dataset in LaMini's schema, split into train and validation."""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from herd.io import atomic_path, write_jsonl
from herd.rng import derive_seed

log = logging.getLogger(__name__)

COLUMNS = ["instruction", "response", "instruction_source"]
# ids of seed rows, as herd.sources.seed_rows writes them: seed-{source}-{entry}-{index}, where
# entry is the position in seed_tasks (a source label may itself hold dashes: match from the right)
SEED_ID = re.compile(r"^seed-(?P<source>.*)-(?P<entry>\d+)-(?P<index>\d+)$")
TAIL_CHARS = 60  # how much of a dropped truncated answer the card shows
TAIL_EXAMPLES = 2


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


def clean(rows: list[dict], drop_truncated: bool = True) -> tuple[list[dict], dict]:
    """Drop empty responses, and answers the teacher stopped at max_tokens (finish_reason
    `length`) unless `drop_truncated` is off. Passthrough rows carry no finish_reason: kept."""
    kept, dropped = [], Counter()
    for r in rows:
        if not r["response"].strip():
            dropped["empty_response"] += 1
        elif drop_truncated and r.get("finish_reason") == "length":
            dropped["truncated_response"] += 1
        else:
            kept.append(r)
    return kept, dict(dropped)


def truncated_tails(rows: list[dict], n: int = TAIL_EXAMPLES, chars: int = TAIL_CHARS) -> list[dict]:
    """The ends of the first `n` answers (by id) cut at max_tokens, for a person to see what was dropped."""
    cut = sorted((r for r in rows if r.get("finish_reason") == "length" and r["response"].strip()),
                 key=lambda r: r["id"])
    return [{"id": r["id"], "tail": r["response"].strip()[-chars:].lstrip()} for r in cut[:n]]


def check_unique_ids(parts: list[tuple[str, list[dict]]]) -> None:
    """Raise if a row id occurs twice among the (file, rows) parts, naming the id and its files."""
    first: dict[str, str] = {}
    dupes = []
    for path, rows in parts:
        for r in rows:
            if r["id"] in first:
                dupes.append((r["id"], first[r["id"]], path))
            else:
                first[r["id"]] = path
    if dupes:
        rid, a, b = dupes[0]
        where = f"twice in {a}" if a == b else f"in {a} and in {b}"
        raise ValueError(
            f"dataset: row id {rid!r} occurs {where} ({len(dupes)} duplicate id(s) in all); row ids must be "
            "unique. Seed rows are numbered per seed_tasks entry (seed-<source>-<entry>-<n>): rerun "
            "results/seed_rows after changing seed_tasks, or look for two shards answering one instruction")


def failed_requests(shard_stats: dict[int, dict]) -> list[dict]:
    """Every teacher request a response shard gave up on: id, error and shard, by id."""
    return sorted(({"id": f["id"], "error": f["error"], "shard": shard}
                   for shard, stats in shard_stats.items() for f in stats.get("failed_requests", [])),
                  key=lambda f: (f["id"], f["shard"]))


def assemble(parts: list[tuple[str, list[dict]]], shard_stats: dict[int, dict],
             drop_truncated: bool = True) -> tuple[list[dict], dict]:
    """Rows of the response shards and the passthrough file, cleaned; and what did not make it:
    drops by reason, examples of truncated answers, failed teacher requests."""
    check_unique_ids(parts)
    rows = [r for _, part in parts for r in part]
    kept, dropped = clean(rows, drop_truncated)
    report = {"dropped": dropped, "failed_requests": failed_requests(shard_stats),
              "truncated_examples": truncated_tails(rows) if drop_truncated else [],
              "truncated_kept": 0 if drop_truncated else sum(r.get("finish_reason") == "length" for r in kept)}
    return kept, report


def generation_summary(shard_stats: list[dict]) -> dict:
    """What the instruction shards lost before the filter: answers cut at max_tokens, the
    fragments dropped as truncated (an unclosed tag, a cut list's last item), unparsable
    answers and failed prompts."""
    total = Counter()
    for stats in shard_stats:
        total["prompts"] += stats.get("prompts", 0)
        total["cut_answers"] += stats.get("cut_answers", 0)
        total["unparsable_answers"] += stats.get("unparsable_answers", 0)
        total["truncated_fragments"] += stats.get("rejected_fragments", {}).get("truncated", 0)
        total["failed_prompts"] += len(stats.get("failed_requests", []))
    return dict(total)


def seed_entry(row_id: str) -> int | None:
    """The seed_tasks entry a seed row came from (None for a generated row)."""
    m = SEED_ID.match(row_id)
    return int(m["entry"]) if m else None


def _row_entries(row: dict, entries: list[dict]) -> list[int]:
    """The seed_tasks entries a row derives from: its own entry for a seed row; for a generated
    row, every `examples` entry (the teacher wrote it prompted with those examples)."""
    entry = seed_entry(row["id"])
    if entry is None and row["id"].startswith("seed-"):
        raise ValueError(f"dataset: seed row {row['id']!r} does not name its seed_tasks entry "
                         "(seed-<source>-<entry>-<n>); rerun results/seed_rows")
    if entry is None:
        return [e["index"] for e in entries if e["use"] == "examples"]
    if not 0 <= entry < len(entries):
        raise ValueError(f"dataset: row {row['id']!r} names seed_tasks entry {entry}, but seed_tasks has "
                         f"{len(entries)} entries; rerun results/seed_rows")
    return [entry]


def provenance(rows: list[dict], entries: list[dict]) -> tuple[dict[int, int], dict[str, int]]:
    """Rows per seed_tasks entry (generated rows count for every examples entry) and rows per licence
    (a row counts once for each distinct licence that applies to it)."""
    per_entry: Counter = Counter()
    per_licence: Counter = Counter()
    for r in rows:
        found = _row_entries(r, entries)
        per_entry.update(found)
        per_licence.update({entries[i]["licence"] for i in found})
    return {e["index"]: per_entry[e["index"]] for e in entries}, dict(sorted(per_licence.items()))


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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _dropped_section(report: dict) -> list[str]:
    dropped, failed = report["dropped"], report["failed_requests"]
    lines = ["| reason | rows |", "|---|---|",
             *[f"| {r} | {n} |" for r, n in sorted(dropped.items())],
             f"| failed teacher request | {len(failed)} |", ""]
    if report.get("truncated_kept"):
        lines += [(f"{report['truncated_kept']} kept answers were stopped at max_tokens (`dataset.drop_truncated`: "
                  "false)."), ""]
    if report["truncated_examples"]:
        lines += [("Ends of dropped answers that the teacher stopped at max_tokens "
                  "(`dataset.drop_truncated`; raise `responses.decoding.max_tokens` to keep more):"), "",
                  *[f"- `{e['id']}`: \"...{_cell(e['tail'])}\"" for e in report["truncated_examples"]], ""]
    if failed:
        lines += [(f"{len(failed)} teacher request(s) failed and are not in the dataset (listed with their "
                  "errors in stats.json). They are not cached: the next `snakemake` run retries them."), "",
                  *[f"- `{f['id']}` (shard {f['shard']}): {_cell(f['error'])[:200]}" for f in failed[:5]],
                  *([f"- ... and {len(failed) - 5} more"] if len(failed) > 5 else []), ""]
    return lines


def _generation_lines(gen: dict | None) -> list[str]:
    if not gen or not gen.get("prompts"):
        return []
    return [(f"Before the filters: {gen['prompts']} generation prompts; {gen.get('cut_answers', 0)} answers were "
             f"stopped at max_tokens and lost {gen.get('truncated_fragments', 0)} cut-off instructions "
             f"(`instructions.decoding.max_tokens`); {gen.get('unparsable_answers', 0)} answers held no "
             f"instruction; {gen.get('failed_prompts', 0)} prompts failed (retried by the next run)."), ""]


def _licence_section(rows: list[dict], entries: list[dict]) -> list[str]:
    per_entry, per_licence = provenance(rows, entries)
    lines = ["| seed_tasks entry | path | format | use | source | licence | rows in the dataset |",
             "|---|---|---|---|---|---|---|"]
    for e in entries:
        n = per_entry[e["index"]]
        count = f"{n} (generated from its examples)" if e["use"] == "examples" else str(n)
        lines.append(f"| {e['index']} | {_cell(str(e['path']))} | {e['format']} | {e['use']} | "
                     f"{_cell(e['source'])} | {_cell(e['licence'])} | {count} |")
    named = ", ".join(f"{lic} ({n} rows)" for lic, n in per_licence.items()) or "none"
    return [*lines, "",
            ("Generated rows (self_instruct_with/without_topic) were written by the teacher prompted with "
            "the `examples` entries, so those entries' licences apply to them too."), "",
            (f"**Licences that apply to the rows: {named}.** Generated text also carries the teacher "
            "model's terms of use."), ""]


# licence names as people write them in seed_tasks, to the Hub's identifiers (the dataset card
# and the model cards both read this one list)
HUB_LICENCES = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "gpl-3.0", "lgpl-3.0", "agpl-3.0", "cc0-1.0",
                "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-3.0", "cc-by-nc-4.0",
                "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "odc-by", "odbl", "openrail", "gemma", "llama2", "llama3",
                "unknown"}
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M")]


def licence_slug(text: str) -> str:
    """`CC BY-NC 4.0` -> `cc-by-nc-4.0`: the Hub's spelling of a licence name."""
    return re.sub(r"[\s_]+", "-", text.strip().lower())


def hub_licence(text: str) -> str:
    """The Hub's identifier of a licence name; a licence the Hub does not know becomes `other`."""
    slug = licence_slug(text)
    return slug if slug in HUB_LICENCES else "other"


def size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>10M")


def front_matter(rows: list[dict], settings: dict, entries: list[dict]) -> dict:
    """The card's Hugging Face metadata: every licence that applies to a row, language, task,
    size, the seed sources the rows derive from, and the teacher that wrote them."""
    _, per_licence = provenance(rows, entries)
    licences = list(per_licence)
    hub = sorted({hub_licence(lic) for lic in licences})
    meta = {"license": hub[0] if len(hub) == 1 else hub}
    if "other" in hub:
        meta["license_name"] = "; ".join(lic for lic in licences if hub_licence(lic) == "other")
    used = [e for e in entries if e["licence"] in per_licence]
    sources = sorted({e["source"] for e in used})
    meta.update({
        "language": ["en"],
        "task_categories": ["text-generation"],
        "size_categories": [size_category(len(rows))],
        "source_datasets": ["original", *sources] if any(seed_entry(r["id"]) is None for r in rows) else sources,
        "pretty_name": "herd distilled instruction dataset",
        "teacher": {k: settings[k] for k in ("teacher", "backend", "teacher_sha256") if settings.get(k)},
        "licences": {lic: n for lic, n in per_licence.items()},  # the licences as written, with row counts
        "configs": [{"config_name": "default", "data_files": [
            {"split": "train", "path": "train.parquet"}, {"split": "validation", "path": "validation.parquet"}]}],
    })
    return meta


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def duplicate_rate(texts: list[str]) -> float:
    """Share of `texts` whose normalised form (lowercase, whitespace collapsed) repeats an earlier one."""
    return (len(texts) - len({normalise(t) for t in texts})) / len(texts) if texts else 0.0


def _quality_section(rows: list[dict], report: dict, filter_stats: dict) -> list[str]:
    """Drops by stage and reason, truncated answers, duplicate rates: one place to judge the data."""
    drops = [("instruction filters", r, n) for r, n in sorted(filter_stats["dropped_by_reason"].items())]
    drops += [("assembly", r, n) for r, n in sorted(report["dropped"].items())]
    drops.append(("assembly", "failed teacher request", len(report["failed_requests"])))
    gen = report.get("generation") or {}
    n_in = filter_stats["input"] or 1
    dup = filter_stats["dropped_by_reason"]
    similar = sum(n for r, n in dup.items() if r.endswith("_similar"))
    return [
        "| stage | reason | rows dropped |", "|---|---|---|", *[f"| {s} | {r} | {n} |" for s, r, n in drops], "",
        "| measure | value |", "|---|---|",
        f"| answers dropped as truncated (stopped at max_tokens) | {report['dropped'].get('truncated_response', 0)} |",
        f"| truncated answers kept (`dataset.drop_truncated`: false) | {report.get('truncated_kept', 0)} |",
        f"| generation answers cut at max_tokens | {gen.get('cut_answers', 0)} |",
        f"| exact duplicates among generated instructions (dropped) | {dup.get('exact_duplicate', 0) / n_in:.1%} |",
        f"| near duplicates among generated instructions (dropped) | {similar / n_in:.1%} |",
        f"| exact duplicate instructions in the dataset | {duplicate_rate([r['instruction'] for r in rows]):.1%} |",
        "",
        ("Near duplicates are ROUGE-L (and, when on, embedding) matches the filter dropped; the diversity "
         "report (`results/diversity/summary.json`) measures paraphrases left in the dataset."), "",
    ]


def card(train: list[dict], val: list[dict], report: dict, settings: dict,
         filter_stats: dict, entries: list[dict]) -> str:
    """A dataset card in Markdown with Hugging Face YAML front matter: sizes, sources, lengths,
    filters, data quality, drops, teacher, licences.

    `report` is assemble()'s; `entries` are the seed_tasks entries with their index."""
    rows = train + val
    meta = yaml.safe_dump(front_matter(rows, settings, entries), sort_keys=False, allow_unicode=True)
    lines = [
        "---", meta.rstrip("\n"), "---", "",
        "# herd distilled instruction dataset", "",
        f"Rows: {len(train)} train, {len(val)} validation. Columns: {', '.join(COLUMNS)}.", "",
        "## Sources and lengths", "", *_length_table(rows), "",
        "## Filters", "",
        (f"Generated instructions: {filter_stats['input']}, kept {filter_stats['kept']}, "
        f"dropped {filter_stats['dropped']}."), "",
        "| reason | dropped |", "|---|---|",
        *[f"| {r} | {n} |" for r, n in sorted(filter_stats["dropped_by_reason"].items())], "",
        *_generation_lines(report.get("generation")),
        "## Left out while assembling", "", *_dropped_section(report),
        "## Data quality", "", *_quality_section(rows, report, filter_stats),
        "## Teacher and decoding", "", "```", *[f"{k}: {v}" for k, v in sorted(settings.items())], "```", "",
        "## Licences of the inputs", "", *_licence_section(rows, entries),
        "## Loading", "",
        ("`datasets.load_dataset(\"parquet\", data_files={\"train\": \"train.parquet\", "
        "\"validation\": \"validation.parquet\"})`"), "",
    ]
    return "\n".join(lines)
