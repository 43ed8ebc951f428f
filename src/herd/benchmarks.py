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

import functools
import logging
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from herd.benchmark_converters import (
    convert_arc,
    convert_boolq,
    convert_cb,
    convert_commonsense_qa,
    convert_copa,
    convert_hellaswag,
    convert_mrpc,
    convert_multirc,
    convert_openbookqa,
    convert_piqa,
    convert_rte,
    convert_siqa,
    convert_sst2,
    convert_wic,
    convert_wsc,
    convert_wsc273,
)
from herd.io import write_jsonl

log = logging.getLogger(__name__)

LOCAL_DATASET_BUILDER = "json"  # datasets' builder for JSONL files
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


def _task_folders() -> list[str] | None:
    """The installed lm-eval's tasks folders (without importing it); None without lm-eval."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return [os.path.join(folder, "tasks") for folder in spec.submodule_search_locations]


def _task_files(folders: list[str]):
    """(folder, file name) of every YAML file under `folders`, in a stable order."""
    for top in folders:
        for folder, subfolders, files in os.walk(top):
            subfolders.sort()
            yield from ((folder, name) for name in sorted(files) if name.endswith(".yaml"))


def _tasks_in(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return TASK_LINE.findall(f.read())


@functools.cache
def known_tasks() -> frozenset[str] | None:
    """Names of the tasks the installed lm-eval defines in YAML (what `builtin_config` finds),
    read from its task files without importing lm-eval; None when lm-eval is not installed.
    This reads all of them (some 14,000 files, a third of a second)."""
    folders = _task_folders()
    if folders is None:
        return None
    return frozenset(name for folder, file in _task_files(folders) for name in _tasks_in(os.path.join(folder, file)))


def _words(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower())) - {""}


def unknown_tasks(names: list[str]) -> list[str] | None:
    """Those of `names` that the installed lm-eval does not define; None without lm-eval.
    The config gate runs on every Snakemake call, so the files whose folders or name share a
    word with a task are read first (arc/arc_challenge.yaml, glue/mnli/mismatch.yaml); all
    of them only when that leaves a name unfound."""
    folders = _task_folders()
    if folders is None:
        return None
    wanted = set(names)
    if not wanted:
        return []
    words = set().union(*map(_words, wanted))
    folder_words: dict[str, set[str]] = {}
    for folder, file in _task_files(folders):
        if folder not in folder_words:
            folder_words[folder] = _words(os.path.basename(folder))
        if words & folder_words[folder] or words & _words(file[:-5]):
            wanted.difference_update(_tasks_in(os.path.join(folder, file)))
            if not wanted:
                return []
    return [name for name in names if name not in known_tasks()]


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
