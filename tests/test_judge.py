"""The judge: grade parsing, LaMini's item selection on the real file, the summary with its
paired intervals and trust check, the blinded rating sheet round trip, and the plan."""
import csv
import itertools
import json
import math
from collections import Counter

import pytest
from conftest import ROOT, SHARED
from fault_server import fault_server  # noqa: F401 (a fixture)

from herd import judge, judge_sheets, judge_tasks, plan
from herd.config import load

USER_ORIENTED = SHARED / "instruct_eval" / "selfinstruct_user_oriented_252.jsonl"
needs_data = pytest.mark.skipif(not USER_ORIENTED.exists(), reason="../shared/data not present")


# ---------------------------------------------------------------- reading a grade

@pytest.mark.parametrize("text, grade", [
    ("The answer is correct and complete.\nGrade: A", "A"),
    ("Minor typo.\n\nGrade: B", "B"),
    ("**Grade:** C", "C"),
    ("**Grade: D**", "D"),
    ("Grade: (B)", "B"),
    ("Grade: [C]", "C"),
    ("Final grade: A.", "A"),
    ("grade: b is wrong case but GRADE: B", None),  # a lower-case letter is never read as a grade
    ("Rationale: fine.\nGrade - B", "B"),
    ("The grade is C", "C"),
    ("Grade: B (acceptable, with minor flaws)", "B"),
    ("Grade: A\nGrade: A", "A"),  # repeated, but the same
    ("  Grade:   D  ", "D"),
    ("Grade: `A`", "A"),
])
def test_parse_grade_reads_a_grade_line(text, grade):
    got, reason = judge.parse_grade(text)
    assert got == grade, reason
    assert (reason == "ok") == (grade is not None)


@pytest.mark.parametrize("text", [
    None, "", "   \n ",
    "The answer is good.",                         # no grade line
    "A",                                           # a bare letter is not a grade line
    "I would give this a grade of B.",             # prose
    "This deserves a grade because it is right.",  # prose, 'b' of because
    "Grade: a",                                    # lower case
    "grade: c",
    "Grade: E",
    "Grade: A+",
    "Grade: B-",
    "Grade: A or B",
    "Grade: A/B",
    "Grade: <A|B|C|D>",                            # the template echoed
    "Grade:",
    "Grade:\nA",                                   # the letter on another line
    "Grade: A\nOn reflection...\nGrade: C",        # two different grades
    "Grade: excellent",
    "Grade: 4",
    "Grade: Good",
    "a grade",
])
def test_parse_grade_never_guesses(text):
    got, reason = judge.parse_grade(text)
    assert got is None
    assert reason.startswith("unparsable")


# ---------------------------------------------------------------- items and the selection

def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def record(i, app="App", instruction="Do a thing.", inp="x", out="y"):
    return json.dumps({"id": f"t{i}", "motivation_app": app, "instruction": instruction,
                       "instances": [{"input": inp, "output": out}]})


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ('{"id": "t9", "motivation_app": "A", "instruction": "Do.", "instances": []}', "'instances'"),
    ('{"id": "t9", "motivation_app": "A", "instruction": "", "instances": [{"input": "", "output": "o"}]}',
     "'instruction'"),
    ('{"id": "t9", "motivation_app": "A", "instruction": "Do.", "instances": [{"input": "", "output": " "}]}',
     "no output"),
    (record(0), "repeats line 1"),
])
def test_load_items_names_file_and_line(tmp_path, bad, message):
    path = write_lines(tmp_path / "items.jsonl", [record(0), bad])
    with pytest.raises(ValueError, match=message) as err:
        judge_tasks.load_items(path)
    assert f"{path}:2" in str(err.value) and "judge.instructions" in str(err.value)


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"judge.instructions: file .*nope.jsonl not found"):
        judge_tasks.load_items(tmp_path / "nope.jsonl")


@needs_data
def test_lamini_rule_on_the_252():
    records = judge_tasks.load_items(USER_ORIENTED)
    assert len(records) == 252
    kept, counts = judge_tasks.select(records, "lamini", None, 1234)
    assert counts["rule_kept"] == counts["selected"] == len(kept) == 119  # LaMini kept 114
    assert (counts["excluded_summarization"], counts["excluded_sentiment"], counts["excluded_nli"]) == (7, 3, 2)
    assert counts["excluded_app_quota"] == 252 - 119 - 12
    assert max(Counter(judge_tasks.app_key(r["app"]) for r in kept).values()) == 2
    assert Counter(judge_tasks.app_key(r["app"]) for r in kept)["yelp"] == 2  # "yelp" and "Yelp" are one app
    # every app keeps an item, but Google Meet, whose only items are summaries
    assert {judge_tasks.app_key(r["app"]) for r in records} - {judge_tasks.app_key(r["app"]) for r in kept} == {"google meet"}
    assert not any(judge_tasks.excluded_kind(r["instruction"]) for r in kept)
    texts = {r["id"]: r["instruction"] for r in records}
    assert judge_tasks.excluded_kind(texts["user_oriented_task_194"]) == "sentiment"  # "Assess the sentiment ..."
    assert judge_tasks.excluded_kind(texts["user_oriented_task_98"]) == "summarization"
    assert judge_tasks.excluded_kind(texts["user_oriented_task_24"]) is None  # a profile summary template: writing
    assert judge_tasks.select(records, "all", None, 1)[1]["selected"] == 252


@needs_data
def test_limit_is_a_seeded_subset():
    records = judge_tasks.load_items(USER_ORIENTED)
    pool = {r["id"] for r in judge_tasks.select(records, "lamini", None, 1)[0]}
    a, counts = judge_tasks.select(records, "lamini", 10, 1234)
    assert counts == {**counts, "rule_kept": 119, "selected": 10}
    assert {r["id"] for r in a} <= pool and [r["id"] for r in a] == sorted(r["id"] for r in a)
    assert a == judge_tasks.select(records, "lamini", 10, 1234)[0]
    assert a != judge_tasks.select(records, "lamini", 10, 99)[0]
    with pytest.raises(ValueError, match="judge.selection"):
        judge_tasks.select(records, "some", None, 1)


def test_task_text_and_derangement():
    assert judge_tasks.task_text({"instruction": " Fix it. ", "input": " teh cat "}) == "Fix it.\n\nteh cat"
    assert judge_tasks.task_text({"instruction": "Name a colour.", "input": ""}) == "Name a colour."
    for n in range(2, 30):
        perm = judge_tasks.derangement(n, 7)
        assert sorted(perm) == list(range(n)) and all(p != i for i, p in enumerate(perm))
    assert judge_tasks.derangement(1, 7) == [] and judge_tasks.derangement(10, 7) == judge_tasks.derangement(10, 7)
    items = [{"id": f"t{i}", "reference": f"ref {i}"} for i in range(5)]
    controls = judge_tasks.control_sets(items, 3)
    assert all(s["answer"] != f"ref {s['item'][1:]}" for s in controls["shuffled"])


def test_an_answer_two_sets_share_is_graded_once_and_read_from_the_cache_after(fault_server, cache):
    """The grade request depends on the item and the answer, never on which model wrote it: the
    judge cannot tell the sets apart, and the same answer is not paid for twice (a real client
    against a local OpenAI-compatible test server; its canned replies parse as no grade)."""
    from herd.teacher.openai_chat import OpenAITeacher

    server = fault_server()
    teacher = OpenAITeacher(server.base_url, "judge-model", None, cache, max_in_flight=2, timeout_s=5.0,
                            max_retries=1)
    items = [{"id": f"t{i}", "app": "A", "instruction": f"Task {i}.", "input": "", "reference": f"ref {i}"}
             for i in range(3)]
    same = [{"item": f"t{i}", "answer": f"answer {i}"} for i in range(3)]
    sets = {"s/pytorch": same, "s/onnx-int8": [dict(r) for r in same],
            "s/base": [{"item": "t0", "answer": "other"}]}
    decoding = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 16}
    rows, ledger = judge.grade(items, sets, decoding, 1, teacher, {"prompt": 0.0, "completion": 0.0}, 1.0)
    assert len(rows) == 3 + 3 + 1 + 3 + 3  # every set and both controls get a row per item
    distinct = 3 + 1 + 3 + 3  # shared answers once; the base's; references; shuffled references
    assert server.total == distinct and len(ledger) == distinct
    assert all(r["grade"] is None and r["reason"] for r in rows)  # no grade line: counted, not guessed
    again = OpenAITeacher(server.base_url, "judge-model", None, cache, max_in_flight=2, timeout_s=5.0,
                          max_retries=1)
    judge.grade(items, {"renamed/pytorch": same}, decoding, 1, again, {"prompt": 0.0, "completion": 0.0}, 1.0)
    assert server.total == distinct and again.stats["generated"] == 0


def test_judge_prompt_shows_the_task_and_asks_for_a_grade_line():
    msgs = judge.judge_messages({"instruction": "Translate to French.", "input": "cat"}, "chat")
    text = msgs[-1]["content"]
    assert "Translate to French." in text and "cat" in text and "chat" in text
    assert text.rstrip().endswith("where X is exactly one of the letters A, B, C or D.")
    assert judge.parse_grade(text)[0] is None  # the prompt's own template line is not a grade


# ---------------------------------------------------------------- the summary

def rows(name, grades, rater=""):
    return [{"set": name, "item": f"t{i}", "grade": g, "rater": rater,
             "reason": "ok" if g else "unparsable: x"} for i, g in enumerate(grades)]


def by(summary, kind, name):
    return next(r for r in summary if r["kind"] == kind and r["set"] == name)


def test_summary_shares_means_and_paired_interval():
    grades = (rows("s/base", ["C", "C", "D", "B", None, "C"])
              + rows("s/pytorch", ["B", "C", "C", "B", "A", None])
              + rows("reference", list("AAAAAA")) + rows("shuffled", list("DDDDDC")))
    summary = judge.summarize(grades, seed=5)
    base = by(summary, "set", "s/base")
    assert (base["n"], base["graded"], base["unparsable"]) == (6, 5, 1)
    assert base["share_C"] == round(3 / 6, 4) and base["share_unparsable"] == round(1 / 6, 4)
    assert base["mean_score"] == round((2 + 2 + 1 + 3 + 2) / 5, 4)  # unparsable excluded
    cmp = by(summary, "vs_base", "s/pytorch")
    # paired on t0-t3 only (t4 has no base grade, t5 no pytorch grade): +1, 0, +1, 0
    assert (cmp["n"], cmp["win"], cmp["tie"], cmp["loss"]) == (4, 2, 2, 0)
    assert cmp["delta"] == 0.5 and 0 <= cmp["lo"] <= 0.5 <= cmp["hi"] <= 1
    assert cmp == by(judge.summarize(grades, seed=5), "vs_base", "s/pytorch")  # seeded


def test_summary_interval_excludes_zero_for_a_clear_gain():
    grades = rows("s/base", list("DDDDDDDDDDCC")) + rows("s/pytorch", list("BBBBBBBBBBAA"))
    cmp = by(judge.summarize(grades, seed=1), "vs_base", "s/pytorch")
    assert (cmp["delta"], cmp["lo"], cmp["hi"], cmp["verdict"]) == (2.0, 2.0, 2.0, "higher")


def test_trust_check_passes_when_references_beat_shuffled():
    grades = rows("reference", list("AABAAABAAA")) + rows("shuffled", list("DDDCDDDDBD"))
    summary = judge.summarize(grades, seed=1)
    trust = by(summary, "trust", "reference")
    assert trust["trusted"] and trust["lo"] > 0 and trust["share_higher"] == 1.0
    text = judge.markdown(summary)
    assert "Trust check passed" in text and "NOT trustworthy" not in text


@pytest.mark.parametrize("reference, shuffled", [
    (list("AAAAAA"), list("AAAAAA")),          # grades everything A
    (list("ABCDAB"), list("BADCBA")),          # noise
    (list("AB"), [None, None]),                # nothing paired
    (list("AD"), list("DA")),
])
def test_trust_check_fails_in_words(reference, shuffled):
    summary = judge.summarize(rows("reference", reference) + rows("shuffled", shuffled), seed=1)
    assert not by(summary, "trust", "reference")["trusted"]
    assert "The judge is NOT trustworthy for this run" in judge.markdown(summary)


def test_no_controls_is_not_trusted():
    summary = judge.summarize(rows("s/base", list("AB")), seed=1)
    assert not by(summary, "trust", "reference")["trusted"]
    assert math.isnan(by(summary, "trust", "reference")["delta"])


# ---------------------------------------------------------------- rating sheet round trip

def test_rating_sheet_round_trip(tmp_path):
    items = [{"id": f"t{i}", "instruction": f"Task {i}.", "input": f"in {i}", "reference": f"ref {i}"}
             for i in range(6)]
    sets = ("s/base", "s/pytorch", "teacher", "reference", "shuffled")
    truth = {s: "DCBAD"[k] for k, s in enumerate(sets)}
    graded = [{"set": s, "item": it["id"], "answer": f"{s} says {it['id']}", "grade": truth[s]}
              for s in sets for it in items]
    sheet, key = judge_sheets.make_sheet(items, graded, seed=3)
    judge_sheets.write_csv(tmp_path / "sheet.csv", sheet, judge_sheets.SHEET_COLUMNS)
    judge_sheets.write_csv(tmp_path / "key.csv", key, judge_sheets.KEY_COLUMNS)
    assert (sheet, key) == judge_sheets.make_sheet(items, graded, seed=3)
    # blinded: no set column, ids unique, and the order is not grouped by set
    with open(tmp_path / "sheet.csv", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == list(judge_sheets.SHEET_COLUMNS) and all(r["grade"] == "" for r in read)
    assert len({r["sheet_id"] for r in read}) == len(read) == 30
    order = [k["set"] for k in key]
    assert sum(a != b for a, b in itertools.pairwise(order)) > 10

    keymap = judge_sheets.read_key(tmp_path / "key.csv")
    bad = {0: "", 1: "E", 2: "a+", 3: "  "}  # row index -> what rater one wrote there
    for rater, damage in (("alice", bad), ("bob", {})):
        with open(tmp_path / f"{rater}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=judge_sheets.SHEET_COLUMNS)
            writer.writeheader()
            for i, r in enumerate(read):
                right = truth[keymap[r["sheet_id"]]["set"]]
                writer.writerow({**r, "grade": damage.get(i, right.lower() if i == 5 else right)})
    with open(tmp_path / "alice.csv", "a", newline="") as fh:
        fh.write("Rdeadbe,x,y,z,A\n")  # an id not in the key
    got, problems = judge_sheets.read_sheets([tmp_path / "alice.csv", tmp_path / "bob.csv"], keymap)
    assert len(got) == 60 and len(problems) == 5
    assert all(f"alice.csv:{i + 2} " in p for i, p in zip(sorted(bad), problems))
    assert "not in the rating key" in problems[-1] and "alice.csv:32" in problems[-1]

    human = judge.summarize(got, seed=3)
    machine = judge.summarize(graded, seed=3)
    assert [(r["kind"], r["set"]) for r in human] == [(r["kind"], r["set"]) for r in machine]
    assert list(human[0]) == list(machine[0])
    assert sum(r["unparsable"] for r in human if r["kind"] == "set") == 4
    assert sum(r["n"] for r in human if r["kind"] == "set") == 60
    for s in sets:
        row = by(human, "set", s)
        assert row[f"share_{truth[s]}"] == round((row["n"] - row["unparsable"]) / row["n"], 4)
    trust = by(human, "trust", "reference")
    assert trust["trusted"] and trust["n"] == 6  # items, each averaged over its raters: not 12 (rater, item) pairs
    pytorch = by(human, "vs_base", "s/pytorch")
    assert (pytorch["n"], pytorch["win"], pytorch["delta"]) == (6, 6, 1.0)

    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "alice.csv").write_text((tmp_path / "bob.csv").read_text())
    with pytest.raises(ValueError, match="share a file name"):  # two raters must not merge into one
        judge_sheets.read_sheets([tmp_path / "alice.csv", tmp_path / "bob" / "alice.csv"], keymap)


def test_sheet_without_a_grade_column_is_an_error(tmp_path):
    path = write_lines(tmp_path / "rater.csv", ["sheet_id,answer", "R1,x"])
    with pytest.raises(ValueError, match=r"rater.csv \(judge.human_sheets\): missing column\(s\) grade"):
        judge_sheets.read_sheets([path], {})


# ---------------------------------------------------------------- the plan

@needs_data
def test_plan_counts_the_judge():
    cfg = load(ROOT / "config.yaml")
    cfg["judge"]["instructions"] = str(USER_ORIENTED)
    estimate = plan.plan_from_config(cfg)
    stage = estimate["stages"]["judge"]
    student_variants = [v for v in cfg["eval"]["variants"] if v != "teacher"]
    sets = len(cfg["students"]) * len(student_variants) + 1  # + the teacher's own answers
    n = cfg["judge"]["limit"]
    assert stage["requests"] == n + n * (sets + 2)
    assert stage["completion_tokens_max"] == n * cfg["judge"]["max_new_tokens"] + n * (sets + 2) * 160
    assert stage["prompt_tokens"] > n * (sets + 2) * 150  # the rubric alone is over 150 tokens
    assert estimate["total"]["requests"] == sum(s["requests"] for s in estimate["stages"].values())
    assert any(line.startswith("judge ") for line in plan.format_plan(estimate).splitlines())
    cfg["judge"]["instructions"] = None
    assert "judge" not in plan.plan_from_config(cfg)["stages"]


@needs_data
def test_a_paid_judge_counts_against_the_budget():
    cfg = load(ROOT / "config.yaml")
    cfg["teacher"].update(backend="openai", model="gpt-4o", base_url="https://api.openai.com/v1")
    cfg["judge"].update(instructions=None)
    without = plan.plan_from_config(cfg)["total"]["usd"]
    cfg["judge"].update(instructions=str(USER_ORIENTED), limit=None)
    estimate = plan.plan_from_config(cfg)
    assert estimate["total"]["usd"] > without
    estimate["max_budget_usd"] = (without + estimate["total"]["usd"]) / 2
    with pytest.raises(ValueError, match="exceeds teacher.max_budget_usd"):
        plan.check_budget(estimate)


# ---------------------------------------------------------------- the stage, end to end (tiny run)

def check_judge_targets(project):
    """The judge targets of the tiny run: the packaged Qwen teacher answers and grades 3 items."""
    from conftest import snakemake

    tiny = ("--configfile", "config/tiny.yaml")
    proc = snakemake(project, "results/judge/summary.csv", *tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = project / "results" / "judge"
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(items) == 3
    grades = [json.loads(line) for line in (out / "grades.jsonl").read_text().splitlines()]
    sets = Counter(g["set"] for g in grades)
    students = ("smollm2-135m", "t5-tiny")
    expected = {f"{s}/{v}" for s in students for v in ("base", "pytorch", "onnx-int8")} | {
        "teacher", "reference", "shuffled"}
    assert set(sets) == expected and set(sets.values()) == {3}
    assert all(g["rationale"] and (g["grade"] in tuple("ABCD")) == (g["reason"] == "ok") for g in grades)
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    # one request (and ledger row) per distinct (item, answer): an answer two sets share is graded once
    distinct = {(g["item"], g["answer"]) for g in grades}
    assert len(ledger) == len(distinct) <= len(grades) and {r["stage"] for r in ledger} == {"judge"}
    for key in distinct:
        assert len({g["grade"] for g in grades if (g["item"], g["answer"]) == key}) == 1
    text = (out / "summary.md").read_text()
    assert ("Trust check passed" in text) != ("NOT trustworthy" in text)
    with open(out / "rating_sheet.csv", newline="") as fh:
        sheet = list(csv.DictReader(fh))
    assert len(sheet) == len(grades) and "set" not in sheet[0]

    # a rater fills the sheet (one cell left blank), and the raters' summary is built
    with open(project / "rater1.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=judge_sheets.SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows({**r, "grade": "" if i == 0 else "ABCD"[i % 4]} for i, r in enumerate(sheet))
    (project / "human.yaml").write_text("judge:\n  human_sheets: [rater1.csv]\n")
    proc = snakemake(project, "results/judge/human_summary.csv", *tiny, "human.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    human = (out / "human_summary.csv").read_text().splitlines()
    machine = (out / "summary.csv").read_text().splitlines()
    assert human[0] == machine[0] and len(human) == len(machine)
    assert "1 sheet cells were not a grade" in (out / "human_summary.md").read_text()
    # nothing is asked twice: a rerun does nothing
    proc = snakemake(project, "-n", "results/judge/summary.csv", *tiny)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@needs_data
def test_judge_targets_on_the_tiny_run(tiny_run):
    check_judge_targets(tiny_run)
