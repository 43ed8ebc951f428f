"""The judge's items: Self-Instruct's user-oriented instructions, cut down as LaMini-LM cut
them, the prompt an answerer sees, and the controls (each item's reference answer, and a
reference moved onto another item). No teacher here: selecting and answering the items
does not depend on how the judge is asked (herd.judge)."""

from __future__ import annotations

import json
import re
from collections import Counter

from herd.rng import rng_for

TEACHER, REFERENCE, SHUFFLED = "teacher", "reference", "shuffled"
CONTROLS = (REFERENCE, SHUFFLED)
BASE = "base"
PER_APP = 2  # LaMini: at most two instructions per motivation_app

# LaMini left out NLI, sentiment and summarization tasks. The Self-Instruct file has no task
# type, so they are recognised by these words in the instruction (case-insensitive). They were
# chosen by reading all 252 instructions: each pattern names the task as the thing to do, and
# none hits a task that only mentions the word (a "profile summary" template, a movie plot with
# a summary, "positive" advice). On the 252 they exclude 12 items (7 summarization, 3 sentiment,
# 2 NLI); with two per app (app_key: 69 apps) the rule keeps 119 (LaMini reported 114; its exact
# list is not public).
EXCLUDE = {
    "nli": re.compile(r"\b(?:entail\w*|contradict\w*|premises?|hypothes[ie]s|follows? from|true or false"
                      r"|correctness of the given statement|prove the following statement)\b", re.IGNORECASE),
    "sentiment": re.compile(r"\b(?:sentiment|positive\b.{0,40}\bnegative|negative\b.{0,40}\bpositive"
                            r"|how many stars)", re.IGNORECASE),
    "summarization": re.compile(r"\b(?:summari[sz](?:e|es|ed|ing|ation)|summary of|tl;?dr)\b", re.IGNORECASE),
}



def load_items(path) -> list[dict]:
    """The items of a Self-Instruct user-oriented file (JSONL: id, motivation_app, instruction,
    instances[{input, output}]): {id, app, instruction, input, reference}, the first instance's
    input and human-written output. A malformed line is an error naming the file and line."""
    items, seen = [], {}
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError as exc:
        raise ValueError(f"judge.instructions: file {path} not found (null turns the judge off)") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno} (judge.instructions)"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: a record must be a JSON object")  # noqa: TRY004 (a data error)
            for key in ("id", "motivation_app", "instruction"):
                if not isinstance(rec.get(key), str) or not rec[key].strip():
                    raise ValueError(f"{where}: {key!r} must be a non-empty string")
            inst = rec.get("instances")
            if (not isinstance(inst, list) or not inst or not isinstance(inst[0], dict)
                    or not all(isinstance(inst[0].get(k), str) for k in ("input", "output"))):
                raise ValueError(f"{where}: 'instances' must be a non-empty list of objects with string "
                                 "'input' and 'output'")
            if not inst[0]["output"].strip():
                raise ValueError(f"{where}: the first instance has no output (the reference answer)")
            if rec["id"] in seen:
                raise ValueError(f"{where}: id {rec['id']!r} repeats line {seen[rec['id']]}")
            seen[rec["id"]] = lineno
            items.append({"id": rec["id"], "app": rec["motivation_app"].strip(), "instruction": rec["instruction"],
                          "input": inst[0]["input"], "reference": inst[0]["output"]})
    if not items:
        raise ValueError(f"{path} (judge.instructions): no items")
    return items


def excluded_kind(instruction: str) -> str | None:
    """The kind of task LaMini left out (nli, sentiment, summarization) that `instruction` is, or None."""
    return next((kind for kind, pattern in EXCLUDE.items() if pattern.search(instruction)), None)


def app_key(app: str) -> str:
    """An app's name for the quota: the file spells some apps two ways ("yelp" and "Yelp",
    "(Wolfram alpha)?" and "Wolfram alpha")."""
    return re.sub(r"[^a-z0-9]+", " ", app.lower()).strip()


def select(records: list[dict], rule: str, limit: int | None, seed: int) -> tuple[list[dict], dict]:
    """The items to evaluate and the counts of the selection. `rule` "lamini": drop the excluded
    kinds, then keep the first PER_APP items of each app in file order; "all": every item. Then
    a seeded random `limit` of them (None: all), sorted by id."""
    counts: Counter = Counter(read=len(records))
    if rule == "all":
        kept = list(records)
    elif rule == "lamini":
        kept, per_app = [], Counter()
        for rec in records:
            kind = excluded_kind(rec["instruction"])
            if kind:
                counts[f"excluded_{kind}"] += 1
            elif per_app[app_key(rec["app"])] >= PER_APP:
                counts["excluded_app_quota"] += 1
            else:
                per_app[app_key(rec["app"])] += 1
                kept.append(rec)
    else:
        raise ValueError(f"judge.selection: unknown rule {rule!r} (use lamini or all)")
    counts["rule_kept"] = len(kept)
    if limit is not None and limit < len(kept):
        kept = rng_for(seed, "judge", "select").sample(kept, limit)
    kept = sorted(kept, key=lambda r: r["id"])
    counts["selected"] = len(kept)
    return kept, dict(counts)


def task_text(item: dict) -> str:
    """The prompt an answerer sees: the instruction, then the input after a blank line (as
    herd's re-answered seed rows are written)."""
    inp = item["input"].strip()
    return f"{item['instruction'].strip()}\n\n{inp}" if inp else item["instruction"].strip()


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point (Sattolo's algorithm: one cycle); [] below 2."""
    if n < 2:
        return []
    perm, rng = list(range(n)), rng_for(seed, "judge", "derangement")
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def control_sets(items: list[dict], seed: int) -> dict[str, list[dict]]:
    """The judge's controls: each item's reference answer, and another item's reference answer."""
    perm = derangement(len(items), seed)
    return {REFERENCE: [{"item": it["id"], "answer": it["reference"]} for it in items],
            SHUFFLED: [{"item": it["id"], "answer": items[j]["reference"], "from_item": items[j]["id"]}
                       for it, j in zip(items, perm)]}
