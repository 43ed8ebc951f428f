"""Zero-shot benchmark data from local files, in the schema lm-eval's own tasks expect.

lm-evaluation-harness (lm-eval) owns the prompts, answer choices and metrics of
every task; this module only swaps its data source. Each registered task names
the files it reads under a configured root (the upstream layout, e.g.
`ARC/ARC-e/ARC-Easy-Test.jsonl`) and a converter that turns them into records
with exactly the fields of the Hugging Face dataset lm-eval loads. `prepare`
writes those records to JSONL; `task_config` returns lm-eval's built-in config
pointed at that file, so the run never touches the Hub.
"""

from __future__ import annotations

import bz2
import csv
import functools
import logging
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from herd.io import read_jsonl, write_jsonl

log = logging.getLogger(__name__)

LOCAL_DATASET_BUILDER = "json"  # datasets' builder for JSONL files
OBQA_CHOICE = re.compile(r"\(([A-Z])\) ")  # "(A) text (B) text ..." in OpenBookQA's TSV


# ---------------------------------------------------------------- converters
# Each takes the task's files (in registry order) and returns records in the
# schema of the Hugging Face dataset named by lm-eval's YAML for that task.


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


@dataclass(frozen=True)
class LocalTask:
    """Where a task's data lies under the benchmark root and how to read it."""

    files: tuple[str, ...]  # relative to the root; the first is the data, the rest side files
    convert: Callable[[list[Path]], list[dict]]
    lm_eval_dir: str  # folder of the task's YAML inside lm_eval/tasks (only that folder is indexed)
    note: str = ""  # how the local items differ from lm-eval's own split, for the eval rows


MRPC_NOTE = "MSR test split; lm-eval's own mrpc scores GLUE validation"
# lm-eval capitalizes ctx_b of the Hub rows ("... roof. He"); the text file keeps it as is ("... roof. he")
HELLASWAG_NOTE = "llama.cpp's text of the validation split; contexts keep the file's case"

TASKS: dict[str, LocalTask] = {
    "arc_easy": LocalTask(("ARC/ARC-e/ARC-Easy-Test.jsonl",), convert_arc, "arc"),
    "arc_challenge": LocalTask(("ARC/ARC-c/ARC-Challenge-Test.jsonl",), convert_arc, "arc"),
    "boolq": LocalTask(("SuperGLUE/BoolQ/val.jsonl",), convert_boolq, "super_glue/boolq"),
    "piqa": LocalTask(("piqa/dev.jsonl", "piqa/dev-labels.lst"), convert_piqa, "piqa"),
    "openbookqa": LocalTask(("openbookqa/test.tsv",), convert_openbookqa, "openbookqa"),
    "sst2": LocalTask(("sst2/dev.tsv",), convert_sst2, "glue/sst2"),
    "rte": LocalTask(("SuperGLUE/RTE/val.jsonl",), convert_rte, "glue/rte"),
    "wic": LocalTask(("SuperGLUE/WiC/val.jsonl",), convert_wic, "super_glue/wic"),
    "hellaswag": LocalTask(("hellaswag/hellaswag_val_full.txt.bz2",), convert_hellaswag, "hellaswag", HELLASWAG_NOTE),
    "wsc273": LocalTask(("wsc273/WSCollection.xml",), convert_wsc273, "wsc273"),
    "mrpc": LocalTask(("mrpc/msr_paraphrase_test.txt",), convert_mrpc, "glue/mrpc", MRPC_NOTE),
    "social_iqa": LocalTask(("siqa/dev.jsonl", "siqa/dev-labels.lst"), convert_siqa, "siqa"),
    "commonsense_qa": LocalTask(("csqa/valid.jsonl",), convert_commonsense_qa, "commonsense_qa"),
    "multirc": LocalTask(("SuperGLUE/MultiRC/val.jsonl",), convert_multirc, "super_glue/multirc"),
    "wsc": LocalTask(("SuperGLUE/WSC/val.jsonl",), convert_wsc, "super_glue/wsc"),
    "copa": LocalTask(("SuperGLUE/COPA/val.jsonl",), convert_copa, "super_glue/copa"),
    "cb": LocalTask(("SuperGLUE/CB/val.jsonl",), convert_cb, "super_glue/cb"),
}



# A task's own YAML file names it on a top-level line `task: <name>` (a group lists its tasks below)
TASK_LINE = re.compile(r"""^['"]?task['"]?:[ \t]*['"]?([^'"\s#]+)['"]?[ \t]*(?:#.*)?$""", re.MULTILINE)


@functools.cache
def known_tasks() -> frozenset[str] | None:
    """Names of the tasks the installed lm-eval defines in YAML (what `builtin_config` finds),
    read from its task files without importing lm-eval; None when lm-eval is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    names = set()
    for folder in spec.submodule_search_locations:
        for path in (Path(folder) / "tasks").rglob("*.yaml"):
            names.update(TASK_LINE.findall(path.read_text(encoding="utf-8", errors="replace")))
    return frozenset(names)


# ---------------------------------------------------------------- local data


def local_files(task: str, root: Path | None) -> list[Path]:
    """The files a registered task reads under `root` (they may not exist)."""
    if task not in TASKS:
        raise KeyError(f"no local data converter for task {task!r}; known: {sorted(TASKS)}")
    if root is None:
        return []
    return [Path(root) / rel for rel in TASKS[task].files]


def data_source(task: str, root: Path | None) -> str:
    """Where a task's items come from, for the eval rows: "local <file> (<note>)" when its local
    files are all present under `root` (what `prepare` reads), else "hub"."""
    paths = local_files(task, root) if task in TASKS else []
    if not paths or not all(p.is_file() for p in paths):
        return "hub"
    spec = TASKS[task]
    return f"local {spec.files[0]}" + (f" ({spec.note})" if spec.note else "")


def subset(records: list, limit: int | None, seed: int, task: str) -> list:
    """A deterministic subset of `limit` records, kept in file order.

    The choice depends only on (seed, task, number of records), so every run,
    student and variant scores the same items.
    """
    if limit is None or limit >= len(records):
        return list(records)
    rng = random.Random(f"{seed}:benchmarks:{task}")
    keep = sorted(rng.sample(range(len(records)), limit))
    return [records[i] for i in keep]


def prepare(task: str, root: Path | None, out_dir: Path, limit: int | None, seed: int) -> Path | None:
    """Convert a task's local files to `out_dir/<task>.jsonl` in lm-eval's schema.

    Returns the JSONL path, or None when `root` is None or a file is missing.
    """
    paths = local_files(task, root)
    if not paths or not all(p.is_file() for p in paths):
        return None
    records = subset(TASKS[task].convert(paths), limit, seed, task)
    out = Path(out_dir) / f"{task}.jsonl"
    n = write_jsonl(out, records)
    log.info("%s: %d items from %s -> %s", task, n, paths[0], out)
    return out


# ---------------------------------------------------------------- lm-eval configs


@functools.cache
def _task_manager(subdir: str | None):
    """lm-eval's TaskManager, indexing only one task folder when it is known.

    Indexing every built-in task takes tens of seconds; one folder is instant.
    """
    from lm_eval.tasks import TaskManager

    if subdir is None:
        return TaskManager()
    import lm_eval.tasks

    return TaskManager(include_defaults=False, include_path=str(Path(lm_eval.tasks.__file__).parent / subdir))


def builtin_config(task: str) -> dict:
    """lm-eval's own config for `task` (YAML includes merged, functions resolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    subdir = TASKS[task].lm_eval_dir if task in TASKS else None
    entry = _task_manager(subdir).task_index.get(task)
    if entry is None and subdir is not None:  # the folder moved in another lm-eval version
        entry = _task_manager(None).task_index.get(task)
    if entry is None or entry.yaml_path is None:
        raise KeyError(f"lm-eval {_lm_eval_version()} has no YAML task named {task!r}")
    cfg = load_yaml(entry.yaml_path, resolve_func=True)
    for key in ("tag", "group"):  # grouping keys, not part of a single task's config
        cfg.pop(key, None)
    return cfg


def eval_split(cfg: dict) -> str:
    """The split lm-eval scores: the test split when the task has one, else validation."""
    split = cfg.get("test_split") or cfg.get("validation_split")
    if not split:
        raise ValueError(f"task {cfg.get('task')!r} has neither a test nor a validation split")
    return split


def task_config(task: str, jsonl_path: Path) -> dict:
    """lm-eval's built-in config for `task`, reading its scored split from `jsonl_path`.

    Prompts, choices, targets and metrics stay lm-eval's; only the data source
    changes (the `json` builder of `datasets`, which works offline). Training
    and few-shot splits are dropped: the evaluation is zero-shot.
    """
    cfg = builtin_config(task)
    split = eval_split(cfg)
    cfg.update(
        dataset_path=LOCAL_DATASET_BUILDER,
        dataset_name=None,
        dataset_kwargs={"data_files": {split: str(Path(jsonl_path).resolve())}},
        training_split=None,
        fewshot_split=None,
        validation_split=split if split == cfg.get("validation_split") else None,
        test_split=split if split == cfg.get("test_split") else None,
    )
    return cfg


def _lm_eval_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("lm_eval")


def describe(task: str, root: Path | None) -> str:
    """Where a task's local data was looked for, for 'unavailable' messages."""
    if task not in TASKS:
        return f"no local converter for {task!r} (local tasks: {', '.join(sorted(TASKS))})"
    if root is None:
        return f"no benchmark root configured (would read <root>/{TASKS[task].files[0]})"
    paths = local_files(task, root)
    missing = [str(p) for p in paths if not p.is_file()]
    return "missing " + ", ".join(missing) if missing else "found " + ", ".join(map(str, paths))
