"""Evaluate a student (PyTorch, ONNX fp32 or ONNX int8) on lm-eval benchmarks and against the teacher.

- the lm-eval adapters (`HerdLM`, `InstructionTemplateLM`) live in `herd.lm_adapter`.
- `run_benchmarks` runs lm-eval's own task configs on local data (see
  `herd.benchmarks`) with any lm-eval `LM`; a task whose data cannot be
  reached gives a row marked "unavailable", a generative or perplexity task
  one marked "unsupported", instead of an error.
- `rouge_vs_teacher` scores greedy student answers against the teacher's
  held-out responses with ROUGE-L.
- `evaluate_student` loads one (student, variant) and returns all its rows.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import os
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from lm_eval.api.model import LM
from tqdm import tqdm

from herd import benchmarks, native, placement
from herd.io import dir_size_mb
from herd.lm_adapter import (
    INSTRUCTION_TEMPLATE,
    HerdLM,
    InstructionTemplateLM,
    is_encoder_decoder,
    model_device,
    prompt_style,
)

log = logging.getLogger(__name__)

VARIANTS = ("base", "pytorch", "onnx", "onnx-int8")  # base: the checkpoint a student started from
NUM_THREADS = 2
GEN_BATCH_SIZE = 8  # prompts per generate() call
MAX_PROMPT_TOKENS = 512  # prompts for ROUGE generation are left-truncated to this
FILTER = "none"  # lm-eval reports a metric as "<metric>,<filter>"; zero-shot scoring has no filter
UNSUPPORTED_OUTPUT_TYPES = ("generate_until", "loglikelihood_rolling")  # not (context, continuation) scoring
BOOTSTRAP_ITERS = 1000  # acc's stderr is closed-form; bootstrap only for other metrics
HUB_PROBE_TIMEOUT_S = 3.0
ROUGE_SAMPLES = 3
ROUGE_SOURCE = "results/dataset/validation.jsonl"  # the held-out rows the ROUGE row scores
COLUMNS = ("student", "variant", "task", "metric", "value", "stderr", "n", "model_size_mb", "status",
           "source", "prompt")


# ---------------------------------------------------------------- loading variants


def eval_device(gpus: int | None, cuda_devices: int) -> str:
    """"cuda" or "cpu" for an eval job, by the students' placement rules: `eval.gpus` unset is one
    GPU when the job sees one, else the CPU; 0 is the CPU. Evaluation runs in one process."""
    if gpus is not None and gpus > cuda_devices:  # placement.placement would name a students.* key
        raise RuntimeError(
            f"eval.gpus is {gpus} but this job sees {cuda_devices} CUDA device(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); ask the cluster "
            "for it (rule eval gets resources gpu from eval.gpus) or set eval.gpus: 0")
    return placement.placement("eval", gpus, None, "fp32", cuda_devices, False).device


def local_eval_device(gpus: int | None) -> str:
    """`eval_device` for this job's hardware."""
    return eval_device(gpus, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def load_variant(variant: str, path: Path, threads: int = NUM_THREADS, device: str = "cpu"):
    """Load a student as (model, tokenizer), PyTorch ones on `device`, with `threads` CPU threads.

    `pytorch` (and `base`, the checkpoint before fine-tuning): a Hugging Face checkpoint directory. `onnx` / `onnx-int8`: a
    directory optimum's ORTModelFor{CausalLM,Seq2SeqLM}.from_pretrained reads
    (ONNX files, config.json, tokenizer files). The config's
    `is_encoder_decoder` picks the class.
    """
    from transformers import AutoConfig, AutoTokenizer

    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}: use one of {', '.join(VARIANTS)}")
    path = Path(path)
    torch.set_num_threads(threads)
    seq2seq = bool(getattr(AutoConfig.from_pretrained(path), "is_encoder_decoder", False))
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if variant in ("base", "pytorch"):
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        model = cls.from_pretrained(path, dtype=torch.float32).eval().to(device)  # fp32 there too
    else:
        import onnxruntime
        from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM

        if variant == "onnx-int8":  # a child process first: its int8 kernels may crash this host
            native.require_onnxruntime_int8()

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        cls = ORTModelForSeq2SeqLM if seq2seq else ORTModelForCausalLM
        # ONNX variants stay on the CPU whatever `device` says: they are the CPU deployment being
        # measured (int8 kernels are CPU kernels), and onnxruntime here has no CUDA provider
        model = cls.from_pretrained(path, provider="CPUExecutionProvider", session_options=options)
    log.info("loaded %s %s from %s on %s", variant, type(model).__name__, path, model_device(model))
    return model, tokenizer


# ---------------------------------------------------------------- benchmarks


def _row(task: str, metric: str, value=math.nan, stderr=math.nan, n=0, status="ok") -> dict:
    return {"task": task, "metric": metric, "value": value, "stderr": stderr, "n": n, "status": status}


def _env_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face Hub answers a TCP connect within `timeout` seconds."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_task(task: str, root: Path | None, data_dir: Path, limit: int | None, seed: int, manager):
    """lm-eval Task object for `task`, or a reason string when its data cannot be reached.

    Local data wins; without it, lm-eval's own dataset is tried only when the
    environment says offline (the `datasets` cache may hold it) or the Hub
    answers, so an unreachable Hub costs seconds, not a hang.
    """
    local = benchmarks.prepare(task, root, data_dir, limit, seed) if task in benchmarks.TASKS else None
    where = benchmarks.describe(task, root)
    if local is not None:
        return manager.load([benchmarks.task_config(task, local)])["tasks"][task]
    if not (_env_offline() or _hub_reachable()):
        return f"unavailable: {where}; the Hugging Face Hub is not reachable"
    cfg = benchmarks.builtin_config(task)
    try:
        return manager.load([cfg])["tasks"][task]
    except Exception as exc:  # datasets raises many types for a missing or offline dataset
        return f"unavailable: {where}; lm-eval's dataset {cfg.get('dataset_path')} failed: {type(exc).__name__}: {exc}"


def _first_metric(cfg: dict) -> str:
    """The metric a task's single unavailable/unsupported row is named by: its first one."""
    metrics = [m.get("metric") for m in cfg.get("metric_list") or [] if isinstance(m, dict)]
    return next((m for m in metrics if isinstance(m, str)), "acc")


def status_row(task: str, status: str, root: Path | None, prompt: str) -> dict:
    """The one NaN row of a task that was not scored (status says why), with the columns
    run_benchmarks gives every row: for scorers that never reach lm-eval (a teacher backend
    without log-likelihoods)."""
    return {**_row(task, _first_metric(benchmarks.builtin_config(task)), status=status),
            "source": benchmarks.data_source(task, root), "prompt": prompt}


def _unsupported(output_type: str | None) -> str | None:
    if output_type in UNSUPPORTED_OUTPUT_TYPES:
        return f"unsupported: {output_type} tasks are not scored by herd"
    return None


def _metric_rows(task: str, res: dict, n: int) -> list[dict]:
    """One row per metric lm-eval reports for `task` ("<metric>,none" keys, neither stderr nor alias)."""
    rows = []
    for key, value in res.items():
        metric, _, filt = key.partition(",")
        if filt != FILTER or metric.endswith("_stderr") or metric == "alias":
            continue
        rows.append(_row(task, metric, _float(value), _float(res.get(f"{metric}_stderr,{FILTER}")), n))
    return rows


def _item_scores(task: str, samples: list[dict], metrics: list[str]) -> list[dict]:
    """Each item's score, for metrics whose per-item value is a plain number (acc, em, record's f1);
    corpus metrics (f1 or mcc over (gold, prediction) pairs) have no per-item score."""
    return [{"task": task, "item": int(s["doc_id"]), "metric": m, "value": float(s[m])}
            for s in samples for m in metrics
            if isinstance(s.get(m), numbers.Real)]


def run_benchmarks(lm: LM, tasks: list[str], root: Path | None, work_dir: Path,
                   limit: int | None, seed: int, items: list[dict] | None = None) -> list[dict]:
    """Zero-shot lm-eval tasks scored by the lm-eval `LM` `lm` (HerdLM for students, any other LM
    for teachers); rows {task, metric, value, stderr, n, status, source, prompt}.

    Converted data goes to `work_dir/data`. Each task gives one row per metric
    lm-eval reports for it (arc_easy: acc, acc_norm; boolq: acc; cb: acc, f1;
    record: f1, em), or one NaN row whose status says why not: "unavailable:"
    naming the path looked for, or "unsupported:" for a generative or
    perplexity task (never handed to lm-eval). `source` says where the task's
    data came from (`benchmarks.data_source`), `prompt` whether contexts went
    through the instruction template (`InstructionTemplateLM`). `items`, when
    given, receives each item's score ({task, item, metric, value}).
    """
    items = [] if items is None else items
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=False)  # tasks come as configs: skip indexing all built-ins
    data_dir = Path(work_dir) / "data"
    configs = {task: benchmarks.builtin_config(task) for task in tasks}  # a misspelt task is a config error
    rows, loaded = {}, {}
    for task in tasks:
        cfg = configs[task]
        # a task defined by a Python class may leave output_type to the class: checked once loaded
        got = _unsupported(cfg.get("output_type", None if "class" in cfg else "generate_until"))
        if got is None:
            got = _load_task(task, root, data_dir, limit, seed, manager)
            if not isinstance(got, str) and _unsupported(got.OUTPUT_TYPE):
                got = _unsupported(got.OUTPUT_TYPE)
        if isinstance(got, str):
            log.warning("%s: %s", task, got)
            rows[task] = [_row(task, _first_metric(cfg), status=got)]
        else:
            loaded[task] = got
    if loaded:
        started = time.monotonic()
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(loaded.values()),
            task_manager=manager,
            num_fewshot=0,
            limit=limit,  # local files already hold the seeded subset; this caps Hub datasets
            log_samples=True,  # per-item scores: paired comparisons between variants (herd.eval_summary)
            bootstrap_iters=BOOTSTRAP_ITERS,
        )
        log.info("lm-eval on %s took %.1f s", ", ".join(loaded), time.monotonic() - started)
        for task in loaded:
            n = int(results["n-samples"][task]["effective"])
            rows[task] = _metric_rows(task, results["results"][task], n)
            metrics = [r["metric"] for r in rows[task]]
            items.extend(_item_scores(task, results.get("samples", {}).get(task, []), metrics))
    prompt = prompt_style(lm)
    return [{**row, "source": benchmarks.data_source(task, root), "prompt": prompt}
            for task in tasks for row in rows[task]]


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # lm-eval writes "N/A" when it has no stderr
        return math.nan


# ---------------------------------------------------------------- ROUGE-L against the teacher


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first: little padding, and a
    memory problem shows up in the first batch."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = GEN_BATCH_SIZE) -> list[str]:
    """Greedy answers to `prompts`, in their order (decoder-only: left-padded, prompt tokens stripped).

    Prompts are tokenised without added special tokens, exactly as training
    (herd.students) encodes them: a tokenizer that adds a start token by default
    (SmolLM2's adds <|im_start|>) would otherwise show the students a first token
    they never saw in training. Batched by length; inputs go to the model's device.
    """
    if not prompts:
        return []
    seq2seq = is_encoder_decoder(model)
    device = model_device(model)
    answers: list[str | None] = [None] * len(prompts)
    old_sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = "right" if seq2seq else "left"
    tokenizer.truncation_side = "left"  # a too-long prompt keeps its end, where the response starts
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        lengths = [len(ids) for ids in tokenizer(prompts, truncation=True, max_length=MAX_PROMPT_TOKENS,
                                                   add_special_tokens=False)["input_ids"]]
        for batch in tqdm(length_batches(lengths, batch_size), desc="generate", unit="batch"):
            enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                            max_length=MAX_PROMPT_TOKENS, add_special_tokens=False).to(device)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     num_beams=1, pad_token_id=pad_id)
            new = out if seq2seq else out[:, enc["input_ids"].shape[1] :]
            for i, answer in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
                answers[i] = answer.strip()
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_sides
    return answers


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (rouge_score, no stemming)."""
    return _rouge_scorer().score(reference, prediction)["rougeL"].fmeasure


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_vs_teacher(model, tokenizer, records: list[dict], prompt_fn: Callable[[str], str],
                     max_new_tokens: int) -> dict:
    """Mean ROUGE-L F1 of greedy student answers against the teacher's responses.

    `records` hold `instruction` and `response` (the teacher's); `prompt_fn`
    renders an instruction as the student was trained to see it. Returns
    {value, stderr, n, samples: [(instruction, student answer, teacher answer)] for the first 3}.
    """
    if not records:
        return {"value": math.nan, "stderr": math.nan, "n": 0, "samples": []}
    answers = generate(model, tokenizer, [prompt_fn(r["instruction"]) for r in records], max_new_tokens)
    scores = [rouge_l(a, r["response"]) for a, r in zip(answers, records)]
    stderr = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else math.nan
    samples = [(r["instruction"], a, r["response"]) for r, a in zip(records[:ROUGE_SAMPLES], answers)]
    return {"value": statistics.fmean(scores), "stderr": stderr, "n": len(scores), "samples": samples,
            "scores": scores}


# ---------------------------------------------------------------- one (student, variant)


def evaluate_student(student: str, variant: str, model_path: Path, validation_records: list[dict],
                     tasks: list[str], root: Path | None, work_dir: Path, limit: int | None, seed: int,
                     max_new_tokens: int, prompt_fn: Callable[[str], str],
                     threads: int = NUM_THREADS, items: list[dict] | None = None,
                     instruction_template: bool = False, gpus: int | None = None,
                     validation_source: str = ROUGE_SOURCE) -> list[dict]:
    """All evaluation rows of one student variant, with the columns in COLUMNS.

    Benchmark rows come from `run_benchmarks` with a `HerdLM` over the
    variant, its contexts first rendered through `prompt_fn` when
    `instruction_template` (eval.instruction_template). One more row (task
    "teacher_rougeL", metric "rougeL_f1") scores the held-out records
    (read from `validation_source`). PyTorch variants run on the device
    `eval_device(gpus)` picks (eval.gpus). `items`, when given, receives
    every item's score, for paired comparisons between variants.
    """
    items = [] if items is None else items
    started = time.monotonic()
    model, tokenizer = load_variant(variant, model_path, threads=threads, device=local_eval_device(gpus))
    size_mb = dir_size_mb(model_path)
    lm = HerdLM(model, tokenizer)
    if instruction_template:
        lm = InstructionTemplateLM(lm, prompt_fn)
    rows = run_benchmarks(lm, tasks, root, Path(work_dir), limit, seed, items)
    # the ROUGE answers are always generated from the student's own prompt, as it was trained
    rouge_cols = {"source": str(validation_source), "prompt": INSTRUCTION_TEMPLATE}
    if validation_records:
        rouge = rouge_vs_teacher(model, tokenizer, validation_records, prompt_fn, max_new_tokens)
        for instruction, answer, teacher in rouge["samples"]:
            log.info("sample: %r -> student %r | teacher %r", instruction, answer, teacher)
        rows.append({**_row("teacher_rougeL", "rougeL_f1", rouge["value"], rouge["stderr"], rouge["n"]),
                     **rouge_cols})
        items.extend({"task": "teacher_rougeL", "item": i, "metric": "rougeL_f1", "value": v}
                     for i, v in enumerate(rouge["scores"]))
    else:
        rows.append({**_row("teacher_rougeL", "rougeL_f1", status="unavailable: no held-out validation records"),
                     **rouge_cols})
    out = [{"student": student, "variant": variant, **row, "model_size_mb": size_mb} for row in rows]
    log.info("%s/%s: %d rows (%d ok) in %.1f s on %s, %.1f MB, prompt %s", student, variant, len(out),
             sum(r["status"] == "ok" for r in out), time.monotonic() - started, model_device(model), size_mb,
             prompt_style(lm))
    return [{k: r[k] for k in COLUMNS} for r in out]
