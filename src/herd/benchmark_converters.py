"""Converters from benchmark files in their upstream layout to the records of the Hugging Face
dataset each lm-eval task loads (field names, label encodings), one per task (herd.benchmarks
registers them). Each takes the task's files, in registry order."""

from __future__ import annotations

import bz2
import csv
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from herd.io import read_jsonl

OBQA_CHOICE = re.compile(r"\(([A-Z])\) ")  # "(A) text (B) text ..." in OpenBookQA's TSV


def _truth(value) -> int:
    """SuperGLUE stores booleans as true/false or "true"/"false"; HF uses 0/1."""
    if isinstance(value, str):
        value = {"true": True, "false": False}[value.strip().lower()]
    return int(bool(value))


def convert_arc(paths: list[Path]) -> list[dict]:
    """AI2 ARC JSONL -> allenai/ai2_arc: id, question, choices{text,label}, answerKey."""
    out = []
    for rec in read_jsonl(paths[0]):
        choices = rec["question"]["choices"]
        out.append(
            {
                "id": rec["id"],
                "question": rec["question"]["stem"],
                "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
                "answerKey": rec["answerKey"],
            }
        )
    return out


def convert_boolq(paths: list[Path]) -> list[dict]:
    """SuperGLUE BoolQ -> aps/super_glue boolq: question, passage, idx, label (1 = true)."""
    return [
        {"question": r["question"], "passage": r["passage"], "idx": r["idx"], "label": _truth(r["label"])}
        for r in read_jsonl(paths[0])
    ]


def convert_piqa(paths: list[Path]) -> list[dict]:
    """PIQA dev.jsonl + dev-labels.lst -> baber/piqa: goal, sol1, sol2, label."""
    records = read_jsonl(paths[0])
    labels = [int(line) for line in paths[1].read_text(encoding="utf-8").split()]
    if len(labels) != len(records):
        raise ValueError(f"{paths[1]}: {len(labels)} labels for {len(records)} items in {paths[0]}")
    return [
        {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": label}
        for r, label in zip(records, labels)
    ]


def convert_openbookqa(paths: list[Path]) -> list[dict]:
    """OpenBookQA TSV -> allenai/openbookqa main: id, question_stem, choices{text,label}, answerKey."""
    out = []
    with open(paths[0], encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            parts = OBQA_CHOICE.split(row["Choices"])  # ["", "A", text, "B", text, ...]
            labels, texts = parts[1::2], [t.strip() for t in parts[2::2]]
            if parts[0].strip() or row["Answer Key"] not in labels:
                raise ValueError(f"{paths[0]}: cannot parse the choices of item {row['ID']}")
            out.append(
                {
                    "id": row["ID"],
                    "question_stem": row["Question Stem"],
                    "choices": {"text": texts, "label": labels},
                    "answerKey": row["Answer Key"],
                }
            )
    return out


def convert_sst2(paths: list[Path]) -> list[dict]:
    """GLUE SST-2 dev TSV (text, label) -> nyu-mll/glue sst2: sentence, label, idx."""
    with open(paths[0], encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [{"sentence": r["text"], "label": int(r["label"]), "idx": i} for i, r in enumerate(rows)]


def convert_rte(paths: list[Path]) -> list[dict]:
    """SuperGLUE RTE (same items as GLUE's) -> nyu-mll/glue rte: sentence1, sentence2, label (0 = entailment)."""
    label_ids = {"entailment": 0, "not_entailment": 1}
    return [
        {"sentence1": r["premise"], "sentence2": r["hypothesis"], "label": label_ids[r["label"]], "idx": r["idx"]}
        for r in read_jsonl(paths[0])
    ]


def convert_wic(paths: list[Path]) -> list[dict]:
    """SuperGLUE WiC -> aps/super_glue wic: word, sentence1/2, start/end offsets, idx, label."""
    keys = ("word", "sentence1", "sentence2", "start1", "start2", "end1", "end2", "idx")
    return [{**{k: r[k] for k in keys}, "label": _truth(r["label"])} for r in read_jsonl(paths[0])]


def convert_hellaswag(paths: list[Path]) -> list[dict]:
    """llama.cpp's HellaSwag text (bz2; per item: context, gold index, four endings) -> Rowan/hellaswag.

    The file holds the context already joined ("<activity label>: <ctx_a> <ctx_b>"). lm-eval
    rebuilds it as preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()), so the
    context is split at its first ": " and ctx_b left empty: the rebuilt query is then the file's
    context (capitalizing ctx_b would change its case). Fields the file lacks (source_id,
    split_type) are empty; `ind` is the item's position in the file.
    """
    with bz2.open(paths[0], "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise ValueError(f"{paths[0]}: {len(lines)} lines, not 6 per item (context, gold index, four endings)")
    out = []
    for i in range(0, len(lines), 6):
        context, gold, endings = lines[i], lines[i + 1].strip(), lines[i + 2 : i + 6]
        label, sep, rest = context.partition(": ")
        if not sep or gold not in ("0", "1", "2", "3"):
            raise ValueError(f"{paths[0]}:{i + 1}: item {i // 6} has no 'label: context' line or no gold 0-3")
        out.append(
            {
                "ind": i // 6,
                "activity_label": label,
                "ctx_a": rest,
                "ctx_b": "",
                "ctx": context,
                "endings": endings,
                "source_id": "",
                "split": "val",
                "split_type": "",
                "label": gold,  # a string in Rowan/hellaswag too; lm-eval takes int(label)
            }
        )
    return out


WSC273_SIZE = 273  # WSC273 is the first 273 schemas of the collection (285 in all)


def _squash(text: str | None) -> str:
    return " ".join((text or "").split())


def convert_wsc273(paths: list[Path]) -> list[dict]:
    """Winograd Schema Collection XML -> winograd_wsc wsc273: text, pronoun, pronoun_loc, quote,
    quote_loc, options, label (0 = first answer), source; built as that dataset's script builds
    them from the same file (whitespace squashed, offsets into `text`)."""
    schemas = ET.parse(paths[0]).getroot().findall("schema")
    if len(schemas) < WSC273_SIZE:
        raise ValueError(f"{paths[0]}: {len(schemas)} schemas, WSC273 needs the first {WSC273_SIZE}")
    out = []
    for n, schema in enumerate(schemas[:WSC273_SIZE]):
        text, quote = schema.find("text"), schema.find("quote")
        left, right = _squash(text.findtext("txt1")), _squash(text.findtext("txt2"))
        quote_left, quote_right = _squash(quote.findtext("quote1")), _squash(quote.findtext("quote2"))
        pronoun = _squash(text.findtext("pron"))
        answer = _squash(schema.findtext("correctAnswer"))
        if answer[:1] not in ("A", "B"):
            raise ValueError(f"{paths[0]}: schema {n} has correctAnswer {answer!r}, not A or B")
        pronoun_loc = len(left) + 1 if left else 0
        out.append(
            {
                "text": f"{left} {pronoun} {right}".strip(),
                "pronoun": pronoun,
                "pronoun_loc": pronoun_loc,
                "quote": f"{quote_left} {pronoun} {quote_right}".strip(),
                # the dataset's own (odd) definition: the pronoun's offset less the quote's left part
                "quote_loc": pronoun_loc - (len(quote_left) + 1 if quote_left else 0),
                "options": [_squash(a.text) for a in schema.find("answers").findall("answer")],
                "label": int(answer[0] == "B"),
                "source": _squash(schema.findtext("source")),
            }
        )
    return out


def convert_mrpc(paths: list[Path]) -> list[dict]:
    """MSR paraphrase corpus TSV (Quality, #1 ID, #2 ID, #1 String, #2 String; BOM) -> nyu-mll/glue
    mrpc: sentence1, sentence2, label (1 = equivalent), idx. The local file is MSR's test split,
    which is GLUE's mrpc test split (labelled here); lm-eval scores GLUE's validation split."""
    with open(paths[0], encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    out = []
    for i, r in enumerate(rows):
        if r["Quality"] not in ("0", "1") or r["#2 String"] is None:
            raise ValueError(f"{paths[0]}:{i + 2}: expected 5 tab-separated fields with Quality 0 or 1")
        out.append({"sentence1": r["#1 String"], "sentence2": r["#2 String"], "label": int(r["Quality"]), "idx": i})
    return out


def convert_siqa(paths: list[Path]) -> list[dict]:
    """Social IQa dev.jsonl + dev-labels.lst -> allenai/social_i_qa: context, question, answerA-C,
    label. The label stays the dataset's 1-based string ("1".."3"): lm-eval subtracts 1."""
    records = read_jsonl(paths[0])
    labels = paths[1].read_text(encoding="utf-8").split()
    if len(labels) != len(records):
        raise ValueError(f"{paths[1]}: {len(labels)} labels for {len(records)} items in {paths[0]}")
    keys = ("context", "question", "answerA", "answerB", "answerC")
    out = []
    for i, (r, label) in enumerate(zip(records, labels)):
        if label not in ("1", "2", "3"):
            raise ValueError(f"{paths[1]}:{i + 1}: label {label!r}, expected 1, 2 or 3")
        out.append({**{k: r[k] for k in keys}, "label": label})
    return out


def convert_commonsense_qa(paths: list[Path]) -> list[dict]:
    """CommonsenseQA JSONL -> tau/commonsense_qa: id, question, question_concept, choices{label,text},
    answerKey (a letter A-E)."""
    out = []
    for r in read_jsonl(paths[0]):
        q = r["question"]
        out.append(
            {
                "id": r["id"],
                "question": q["stem"],
                "question_concept": q.get("question_concept", ""),
                "choices": {"label": [c["label"] for c in q["choices"]], "text": [c["text"] for c in q["choices"]]},
                "answerKey": r["answerKey"],
            }
        )
    return out


def convert_multirc(paths: list[Path]) -> list[dict]:
    """SuperGLUE MultiRC (passages holding questions holding answers) -> aps/super_glue multirc:
    one record per answer, paragraph, question, answer, idx{paragraph,question,answer}, label
    (1 = the answer is correct)."""
    out = []
    for r in read_jsonl(paths[0]):
        passage = r["passage"]
        for q in passage["questions"]:
            for a in q["answers"]:
                out.append(
                    {
                        "paragraph": passage["text"],
                        "question": q["question"],
                        "answer": a["text"],
                        "idx": {"paragraph": r["idx"], "question": q["idx"], "answer": a["idx"]},
                        "label": _truth(a["label"]),
                    }
                )
    return out


def _fix_wsc_span(text: str, span: str, index: int) -> str:
    """super_glue's wsc.fixed repair of a span that is not a substring of the text: match the case
    of the word at its index, drop a trailing period and stray newlines."""
    if span in text:
        return span
    word = text.split()[index]
    span = (span[0].lower() if word[0].islower() else span[0].upper()) + span[1:]
    return span.rstrip(".").replace("\n", " ")


def convert_wsc(paths: list[Path]) -> list[dict]:
    """SuperGLUE WSC -> aps/super_glue wsc.fixed: text, span1/2_index (word offsets), span1/2_text,
    idx, label (1 = the pronoun refers to span1)."""
    out = []
    for r in read_jsonl(paths[0]):
        t = r["target"]
        out.append(
            {
                "text": r["text"],
                "span1_index": t["span1_index"],
                "span2_index": t["span2_index"],
                "span1_text": _fix_wsc_span(r["text"], t["span1_text"], t["span1_index"]),
                "span2_text": _fix_wsc_span(r["text"], t["span2_text"], t["span2_index"]),
                "idx": r["idx"],
                "label": _truth(r["label"]),
            }
        )
    return out


def convert_copa(paths: list[Path]) -> list[dict]:
    """SuperGLUE COPA -> aps/super_glue copa: premise, choice1, choice2, question, idx, label (0 = choice1)."""
    keys = ("premise", "choice1", "choice2", "question", "idx")
    return [{**{k: r[k] for k in keys}, "label": int(r["label"])} for r in read_jsonl(paths[0])]


CB_LABELS = {"entailment": 0, "contradiction": 1, "neutral": 2}  # super_glue cb's class order


def convert_cb(paths: list[Path]) -> list[dict]:
    """SuperGLUE CB -> aps/super_glue cb: premise, hypothesis, idx, label (0 entailment, 1
    contradiction, 2 neutral)."""
    return [
        {"premise": r["premise"], "hypothesis": r["hypothesis"], "idx": r["idx"], "label": CB_LABELS[r["label"]]}
        for r in read_jsonl(paths[0])
    ]
