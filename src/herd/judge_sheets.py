"""Blinded rating sheets for human raters, and reading them back filled in.

A sheet lists every graded answer (students, teacher, the reference and the shuffled
control) in a seeded random order under a random sheet id, with an empty grade column:
a rater cannot tell who wrote what. The key (sheet id -> answer set, item) is a separate
file the raters do not see. Filled sheets, one per rater, are read back into the rows the
judge's summary reads (herd.judge.summarize), so humans and the judge get the same table.
"""

from __future__ import annotations

import csv
from pathlib import Path

from herd.io import atomic_path
from herd.judge import GRADES
from herd.rng import rng_for

SHEET_COLUMNS = ("sheet_id", "instruction", "input", "answer", "grade")
KEY_COLUMNS = ("sheet_id", "set", "item")


def make_sheet(items: list[dict], grades: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """(sheet rows, key rows) for the answers in `grades` (rows with set, item, answer)."""
    by_id = {it["id"]: it for it in items}
    rows = sorted(grades, key=lambda r: (r["set"], r["item"]))
    rng = rng_for(seed, "judge", "sheet")
    rng.shuffle(rows)
    ids = rng.sample(range(16**6), len(rows))  # distinct, and no order to read from them
    sheet, key = [], []
    for n, row in zip(ids, rows):
        item = by_id[row["item"]]
        sid = f"R{n:06x}"
        sheet.append({"sheet_id": sid, "instruction": item["instruction"], "input": item["input"],
                      "answer": row["answer"], "grade": ""})
        key.append({"sheet_id": sid, "set": row["set"], "item": row["item"]})
    return sheet, key


def write_csv(path, rows: list[dict], columns: tuple[str, ...]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _read_csv(path, required: tuple[str, ...], what: str) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} ({what}): missing column(s) {', '.join(missing)}; "
                             f"expected {', '.join(required)}")
        return list(reader)


def read_key(path) -> dict[str, dict]:
    return {r["sheet_id"]: {"set": r["set"], "item": r["item"]} for r in _read_csv(path, KEY_COLUMNS, "rating key")}


def read_sheets(paths: list[str], key: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """Grade rows (set, item, rater, grade, reason) of filled sheets, one rater per file (named
    by its file name), and the problems found. A grade is one letter A-D (case and spaces
    ignored); a blank or any other value is reported with file and row and counted as missing
    (grade None). A sheet id not in the key, or given twice in one file, is reported and skipped."""
    rows, problems = [], []
    stems = [Path(p).stem for p in paths]
    twice = sorted({str(p) for p, stem in zip(paths, stems) if stems.count(stem) > 1})
    if twice:  # a rater is named by the file name: two raters' sheets must not merge
        raise ValueError(f"judge.human_sheets: {', '.join(twice)} share a file name; name each rater's "
                         "sheet differently (e.g. alice.csv, bob.csv)")
    for path, rater in zip(paths, stems):
        seen = set()
        for line, rec in enumerate(_read_csv(path, ("sheet_id", "grade"), "judge.human_sheets"), 2):
            sid = (rec["sheet_id"] or "").strip()
            where = f"{path}:{line} (sheet_id {sid or '?'})"
            if sid not in key:
                problems.append(f"{where}: sheet id not in the rating key, row skipped")
                continue
            if sid in seen:
                problems.append(f"{where}: sheet id given twice in this file, row skipped")
                continue
            seen.add(sid)
            value = (rec["grade"] or "").strip().upper()
            if value in GRADES and len(value) == 1:
                grade, reason = value, "ok"
            else:
                grade, reason = None, "unparsable: blank" if not value else f"unparsable: {rec['grade']!r}"
                problems.append(f"{where}: grade {rec['grade']!r} is not one of A, B, C, D: counted as missing")
            rows.append({**key[sid], "rater": rater, "grade": grade, "reason": reason})
    return rows, problems
