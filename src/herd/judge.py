"""LaMini's human evaluation, made repeatable: a teacher model grades answers A-D.

The items are Self-Instruct's 252 user-oriented instructions, cut down the way
LaMini-LM cut them (at most two per `motivation_app`, no NLI, sentiment or
summarization tasks). Every answer set (each student variant, the teacher) is
graded with the same rubric by a judge model. The judge is checked on every run:
it also grades the items' human reference answers, and the same references moved
onto the wrong instructions; a judge that cannot tell these apart says nothing
about the students. Grades that cannot be read are counted, never guessed.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from herd import cost
from herd.eval_summary import paired_bootstrap, verdict
from herd.judge_tasks import BASE, REFERENCE, SHUFFLED, control_sets, task_text
from herd.prompts import render_response
from herd.rng import derive_seed
from herd.teacher import Decoding, Request, Teacher, check_failures

GRADES = "ABCD"
SCORE = {"A": 4, "B": 3, "C": 2, "D": 1}
JUDGE_SYSTEM = "You are a strict, fair grader of answers written by AI assistants."

_JUDGE_PROMPT = """Grade how well the answer below completes the task, on this scale:

A: the answer is valid and satisfying: it does what the task asks, correctly and completely.
B: the answer is acceptable but has small flaws (a minor mistake, something missing, awkward form).
C: the answer is on topic and tries to do the task, but has serious mistakes or leaves much of it undone.
D: the answer is off topic, wrong or meaningless as a reply to this task.

### Task:
{instruction}

### Input:
{input}

### Answer:
{answer}

First explain your judgement in one to three sentences. Then write one last line of the form
Grade: X
where X is exactly one of the letters A, B, C or D."""


# ---------------------------------------------------------------- asking the teacher


def teacher_answers(items: list[dict], system_prompt: str, max_tokens: int, seed: int, teacher: Teacher,
                    usd_per_m: dict, max_failed_fraction: float) -> tuple[list[dict], list[dict]]:
    """The teacher's own answers to the items (greedy, as the students'): (rows, ledger)."""
    decoding = Decoding(temperature=0.0, top_p=1.0, max_tokens=max_tokens)
    requests = [Request(render_response(task_text(it), system_prompt), decoding, derive_seed(seed, "judge", it["id"]))
                for it in items]
    answers = teacher.answer(requests, desc="judge answers")
    ledger = cost.ledger_rows(teacher, requests, answers, "judge", usd_per_m)
    check_failures(answers, max_failed_fraction, "judge_teacher_answers")
    rows = [{"item": it["id"], "answer": a.text.strip(), "finish_reason": a.finish_reason}
            for it, a in zip(items, answers) if a.ok]
    return rows, ledger


def judge_messages(item: dict, answer: str) -> list[dict]:
    prompt = _JUDGE_PROMPT.format(instruction=item["instruction"].strip(),
                                  input=item["input"].strip() or "(none)", answer=answer.strip() or "(empty)")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]


def grade(items: list[dict], answer_sets: dict[str, list[dict]], decoding: dict, seed: int, teacher: Teacher,
          usd_per_m: dict, max_failed_fraction: float) -> tuple[list[dict], list[dict]]:
    """Grade every answer of `answer_sets` (set name -> rows {item, answer}) plus the controls:
    (grade rows sorted by set and item, ledger)."""
    by_id = {it["id"]: it for it in items}
    sets = {**answer_sets, **control_sets(items, seed)}
    todo = [(name, row) for name in sorted(sets) for row in sorted(sets[name], key=lambda r: r["item"])
            if row["item"] in by_id]
    dec = Decoding(**decoding)
    # the seed follows the item and the answer, not the set's name: an answer two variants share
    # (or a renamed student's) is graded once and read from the cache after
    distinct = list(dict.fromkeys((row["item"], row["answer"]) for _, row in todo))
    requests = [Request(judge_messages(by_id[item], answer), dec, derive_seed(seed, "judge", "grade", item, answer))
                for item, answer in distinct]
    graded = dict(zip(distinct, teacher.answer(requests, desc="judge grades")))
    answers = [graded[(row["item"], row["answer"])] for _, row in todo]
    ledger = cost.ledger_rows(teacher, requests, list(graded.values()), "judge", usd_per_m)  # one row per request
    check_failures(answers, max_failed_fraction, "judge_grade")
    rows = []
    for (name, row), ans in zip(todo, answers):
        letter, reason = parse_grade(ans.text) if ans.ok else (None, f"failed: {ans.error}")
        rows.append({"set": name, "item": row["item"], "answer": row["answer"], "grade": letter,
                     "reason": reason, "rationale": ans.text if ans.ok else None})
    return rows, ledger


# ---------------------------------------------------------------- reading a grade

_GRADE_LINE = re.compile(r"\bgrade\b[\s*_]*(?:[:=\-]|is\b)?[\s*_\"'`]*(.*)$", re.IGNORECASE)
_LETTER = re.compile(r"^[(\[]?([A-Za-z])(?![A-Za-z0-9+\-])[)\]]?")


def parse_grade(text: str | None) -> tuple[str | None, str]:
    """(grade, "ok") from a judge's answer, or (None, why it is unparsable).

    A grade is read only from a line saying `Grade: X` (markdown, quotes, brackets and a
    following explanation allowed), X one capital letter A-D standing alone. No such line,
    a lower-case or other letter, a modified grade (A+, B-), a line naming two letters
    ("Grade: A or B", the template "<A|B|C|D>"), or lines giving different grades: unparsable.
    """
    if not text or not text.strip():
        return None, "unparsable: empty answer"
    found, problems = [], []
    for line in text.splitlines():
        m = _GRADE_LINE.search(line)
        if not m:
            continue
        value = m.group(1).strip().strip("*_`\"'").strip()
        if not value:
            problems.append("a 'Grade' line without a letter")
            continue
        lm = _LETTER.match(value)
        if not lm or lm.group(1) not in GRADES:
            problems.append(f"not a grade A-D: {value[:20]!r}")
            continue
        if re.search(r"(?<![A-Za-z'])[ABCD](?![A-Za-z'])", value[lm.end():]):
            problems.append(f"more than one letter: {value[:30]!r}")
            continue
        found.append(lm.group(1))
    if len(set(found)) > 1:
        return None, f"unparsable: different grades {', '.join(dict.fromkeys(found))}"
    if found:
        return found[0], "ok"
    if problems:
        return None, f"unparsable: {problems[0]}"
    return None, "unparsable: no 'Grade: X' line"


# ---------------------------------------------------------------- the summary


def _item_scores(rows: list[dict]) -> dict[str, float]:
    """Each item's score, averaged over its raters: raters of one item are not independent
    draws, so the bootstrap resamples items, never (rater, item) pairs."""
    by_item: dict[str, list[int]] = {}
    for r in rows:
        if r["grade"]:
            by_item.setdefault(r["item"], []).append(SCORE[r["grade"]])
    return {item: sum(v) / len(v) for item, v in by_item.items()}


def _set_row(name: str, rows: list[dict]) -> dict:
    counts = Counter(r["grade"] for r in rows)
    failed = sum(1 for r in rows if r["grade"] is None and str(r.get("reason", "")).startswith("failed"))
    unparsable = counts[None] - failed
    graded = [SCORE[r["grade"]] for r in rows if r["grade"]]
    out = {"kind": "set", "set": name, "n": len(rows), "graded": len(graded), "unparsable": unparsable,
           "failed": failed}
    for g in GRADES:
        out[f"share_{g}"] = round(counts[g] / len(rows), 4) if rows else math.nan
    out["share_unparsable"] = round(unparsable / len(rows), 4) if rows else math.nan
    out["mean_score"] = round(sum(graded) / len(graded), 4) if graded else math.nan
    return out


def _paired(a: list[dict], b: list[dict], seed: int, *parts) -> dict:
    """Score of `a` minus `b` on the items graded in both: win/tie/loss and the paired interval."""
    sa, sb = _item_scores(a), _item_scores(b)
    deltas = [sa[u] - sb[u] for u in sorted(sa.keys() & sb.keys())]
    boot = paired_bootstrap([deltas], seed=derive_seed(seed, "judge", *parts)) if deltas else paired_bootstrap([])
    return {"win": sum(d > 0 for d in deltas), "tie": sum(d == 0 for d in deltas),
            "loss": sum(d < 0 for d in deltas), "n": boot["n"],
            **{k: round(boot[k], 4) for k in ("delta", "lo", "hi")}, "verdict": verdict(boot)}


def summarize(grades: list[dict], seed: int, threshold: float = 0.0) -> list[dict]:
    """Rows of the summary: one per answer set (kind "set"), one per student variant against the
    student's base on the same items (kind "vs_base"), and the judge's trust check (kind
    "trust": reference minus shuffled; trusted when the interval's low end is above `threshold`)."""
    sets: dict[str, list[dict]] = {}
    for r in grades:
        sets.setdefault(r["set"], []).append(r)
    out = [_set_row(name, sets[name]) for name in sorted(sets)]
    for name in sorted(sets):
        student, _, variant = name.partition("/")
        base = f"{student}/{BASE}"
        if variant and variant != BASE and base in sets:
            out.append({"kind": "vs_base", "set": name, "against": base,
                        **_paired(sets[name], sets[base], seed, name, base)})
    cmp = _paired(sets.get(REFERENCE, []), sets.get(SHUFFLED, []), seed, REFERENCE, SHUFFLED)
    trusted = bool(cmp["n"]) and not math.isnan(cmp["lo"]) and cmp["lo"] > threshold
    out.append({"kind": "trust", "set": REFERENCE, "against": SHUFFLED, **cmp,
                "share_higher": round(cmp["win"] / cmp["n"], 4) if cmp["n"] else math.nan,
                "threshold": threshold, "trusted": trusted})
    return out


def _f(x, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(rows: list[dict], who: str = "the judge") -> str:
    """The summary as Markdown, the trust verdict in words first."""
    trust = next(r for r in rows if r["kind"] == "trust")
    lines = ["# Graded answers (A=4, B=3, C=2, D=1)", ""]
    if trust["trusted"]:
        lines.append(f"**Trust check passed:** {who} gave the reference answers a higher mean score than the "
                     f"same answers moved onto the wrong instructions, by {_f(trust['delta'])} "
                     f"(95% interval {_f(trust['lo'])} to {_f(trust['hi'])}, above {trust['threshold']:g}).")
    else:
        be, it = ("are", "they") if who.endswith("s") else ("is", "it")  # "the raters" or "the judge"
        lines.append(f"**{who.capitalize()} {be} NOT trustworthy for this run:** {it} did not reliably score the "
                     f"reference answers above the same answers moved onto the wrong instructions (difference "
                     f"{_f(trust['delta'])}, 95% interval {_f(trust['lo'])} to {_f(trust['hi'])} over "
                     f"{trust['n']} items; the low end must be above {trust['threshold']:g}). "
                     "Do not read the grades below as a measure of the students.")
    lines += ["", (f"Reference graded higher than shuffled on {trust['win']} of {trust['n']} items "
                   f"(share {_f(trust['share_higher'])}), equal on {trust['tie']}, lower on {trust['loss']}."), "",
              "| set | n | A | B | C | D | unparsable | failed | mean score |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "set":
            shares = " | ".join(_f(r[f"share_{g}"]) for g in GRADES)
            lines.append(f"| {r['set']} | {r['n']} | {shares} | {r['unparsable']} | {r['failed']} | "
                         f"{_f(r['mean_score'])} |")
    pairs = [r for r in rows if r["kind"] == "vs_base"]
    if pairs:
        lines += ["", ("Each variant against its student's base, on the items both got a grade for "
                       "(paired bootstrap, 95%):"), "",
                  "| variant | against | n | win | tie | loss | mean difference | interval | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['set']} | {r['against']} | {r['n']} | {r['win']} | {r['tie']} | {r['loss']} | "
                  f"{_f(r['delta'])} | {_f(r['lo'])} to {_f(r['hi'])} | {r['verdict']} |" for r in pairs]
    return "\n".join(lines) + "\n"
