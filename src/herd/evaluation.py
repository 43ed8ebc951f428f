"""Evaluate a student (PyTorch, ONNX fp32 or ONNX int8) on lm-eval benchmarks and against the teacher.

- `HerdLM` adapts any Hugging Face-style model whose forward returns `.logits`
  (transformers or optimum's ONNX Runtime classes, decoder-only or
  encoder-decoder) to lm-eval's `LM` interface; it scores (context,
  continuation) pairs, which is all zero-shot multiple-choice tasks need.
- `run_benchmarks` runs lm-eval's own task configs on local data (see
  `herd.benchmarks`); a task whose data cannot be reached gives a row marked
  "unavailable" instead of an error.
- `rouge_vs_teacher` scores greedy student answers against the teacher's
  held-out responses with ROUGE-L.
- `evaluate_student` loads one (student, variant) and returns all its rows.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from tqdm import tqdm

from herd import benchmarks, native
from herd.io import dir_size_mb

log = logging.getLogger(__name__)

VARIANTS = ("base", "pytorch", "onnx", "onnx-int8")  # base: the checkpoint a student started from
NUM_THREADS = 2
BATCH_SIZE = 8  # (context, continuation) pairs per forward pass
GEN_BATCH_SIZE = 8  # prompts per generate() call
MAX_LENGTH_FALLBACK = 2048  # when neither config nor tokenizer gives a usable limit
MAX_PROMPT_TOKENS = 512  # prompts for ROUGE generation are left-truncated to this
METRICS = ("acc", "acc_norm")  # as lm-eval reports them, "<metric>,none"
BOOTSTRAP_ITERS = 1000  # acc's stderr is closed-form; bootstrap only for other metrics
HUB_PROBE_TIMEOUT_S = 3.0
ROUGE_SAMPLES = 3
COLUMNS = ("student", "variant", "task", "metric", "value", "stderr", "n", "model_size_mb", "status")


# ---------------------------------------------------------------- the lm-eval adapter


def is_encoder_decoder(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def _max_length(model, tokenizer) -> int:
    """Longest input the model takes: its position table, else the tokenizer's limit."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else MAX_LENGTH_FALLBACK


def _right_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, attention mask), padded on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


class HerdLM(TemplateLM):
    """lm-eval `LM` over a Hugging Face-style model (PyTorch or ONNX Runtime).

    Tokenisation follows lm-eval's `TemplateLM`: trailing whitespace of the
    context moves into the continuation; decoder-only models encode
    context+continuation together and score the continuation's tokens;
    encoder-decoder models encode the context and score the continuation as
    the decoder's target. Special tokens follow the tokenizer's defaults and an
    empty context becomes the BOS (else EOS) token, as in lm-eval's HFLM, so
    scores match `lm_eval --model hf` on the same checkpoint.
    """

    def __init__(self, model, tokenizer, batch_size: int = BATCH_SIZE):
        super().__init__()
        if isinstance(model, torch.nn.Module):
            model.eval()  # a model fresh from training would otherwise score with dropout
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.backend = "seq2seq" if is_encoder_decoder(model) else "causal"
        self.max_length = _max_length(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """The token an empty context becomes: BOS, else EOS (as lm-eval's HFLM)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """lm-eval's HFLM convention: the tokenizer's own default for special tokens
        (e.g. a BOS where the tokenizer adds one), but no second BOS."""
        if add_special_tokens is None:
            bos = self.tokenizer.bos_token
            add_special_tokens = not (bos and string.startswith(bos))
        return self.tokenizer.encode(string, add_special_tokens=add_special_tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Score (key, context tokens, continuation tokens) requests in right-padded batches.

        Requests are sorted longest first, so padding stays small and a memory
        problem shows up in the first batch; results come back in input order.
        """
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        score = self._score_seq2seq if self.backend == "seq2seq" else self._score_causal
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="loglikelihood", unit="batch", disable=disable_tqdm):
            pairs = [(requests[i][1], requests[i][2]) for i in batch]
            with torch.inference_mode():
                for i, result in zip(batch, score(pairs)):
                    results[i] = result
        return results

    @staticmethod
    def _sum_and_greedy(logits: torch.Tensor, targets: list[int]) -> tuple[float, bool]:
        """Sum of the targets' log-probs under `logits` (one row per target), and whether argmax hits them all."""
        logprobs = F.log_softmax(logits.float(), dim=-1)
        target = torch.tensor(targets, dtype=torch.long)
        total = logprobs.gather(-1, target[:, None]).sum().item()
        return total, bool((logprobs.argmax(-1) == target).all())

    def _score_causal(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        # Input is context+continuation minus its last token, left-truncated to the model's length;
        # the logits at the last len(continuation) input positions predict the continuation.
        inputs = [(ctx + cont)[-(self.max_length + 1) :][:-1] for ctx, cont in pairs]
        ids, mask = _right_pad(inputs, self.pad_id)
        logits = torch.as_tensor(self.model(input_ids=ids, attention_mask=mask).logits)
        out = []
        for row, (inp, (_, cont)) in enumerate(zip(inputs, pairs)):
            end = len(inp)
            out.append(self._sum_and_greedy(logits[row, end - len(cont) : end], cont))
        return out

    def _score_seq2seq(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        # The encoder reads the context; the decoder reads <start> + continuation[:-1] and predicts the continuation.
        start = self.model.config.decoder_start_token_id
        if start is None:
            start = self.pad_id
        enc_ids, enc_mask = _right_pad([ctx[-self.max_length :] for ctx, _ in pairs], self.pad_id)
        dec_ids, _ = _right_pad([[start] + cont[:-1] for _, cont in pairs], self.pad_id)
        logits = torch.as_tensor(
            self.model(input_ids=enc_ids, attention_mask=enc_mask, decoder_input_ids=dec_ids).logits
        )
        return [self._sum_and_greedy(logits[row, : len(cont)], cont) for row, (_, cont) in enumerate(pairs)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(
            "HerdLM scores multiple-choice tasks only; perplexity tasks (loglikelihood_rolling) are not supported"
        )

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(
            "HerdLM scores multiple-choice tasks only; generative lm-eval tasks (generate_until) are not supported"
        )


# ---------------------------------------------------------------- loading variants


def load_variant(variant: str, path: Path, threads: int = NUM_THREADS):
    """Load a student as (model, tokenizer) on the CPU with `threads` threads.

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
        model = cls.from_pretrained(path, dtype=torch.float32).eval()
    else:
        import onnxruntime
        from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM

        if variant == "onnx-int8":  # a child process first: its int8 kernels may crash this host
            native.require_onnxruntime_int8()

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        cls = ORTModelForSeq2SeqLM if seq2seq else ORTModelForCausalLM
        model = cls.from_pretrained(path, provider="CPUExecutionProvider", session_options=options)
    log.info("loaded %s %s from %s", variant, type(model).__name__, path)
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


def run_benchmarks(model, tokenizer, tasks: list[str], root: Path | None, work_dir: Path,
                   limit: int | None, seed: int, items: list[dict] | None = None) -> list[dict]:
    """Zero-shot lm-eval tasks on one model; rows {task, metric, value, stderr, n, status}.

    Converted data goes to `work_dir/data`. Each task gives one row per metric
    in METRICS that lm-eval reports for it (boolq, sst2, rte, wic: acc only),
    or one NaN row whose status starts with "unavailable:" and names the path
    looked for. `items`, when given, receives each item's score ({task, item, metric, value}).
    """
    items = [] if items is None else items
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=False)  # tasks come as configs: skip indexing all built-ins
    data_dir = Path(work_dir) / "data"
    for task in tasks:  # a misspelt task is a configuration error, not missing data
        benchmarks.builtin_config(task)
    rows, loaded = {}, {}
    for task in tasks:
        got = _load_task(task, root, data_dir, limit, seed, manager)
        if isinstance(got, str):
            log.warning("%s: %s", task, got)
            rows[task] = [_row(task, "acc", status=got)]
        else:
            loaded[task] = got
    if loaded:
        started = time.monotonic()
        results = lm_eval.simple_evaluate(
            model=HerdLM(model, tokenizer),
            tasks=list(loaded.values()),
            task_manager=manager,
            num_fewshot=0,
            limit=limit,  # local files already hold the seeded subset; this caps Hub datasets
            log_samples=True,  # per-item scores: paired comparisons between variants (herd.eval_summary)
            bootstrap_iters=BOOTSTRAP_ITERS,
        )
        log.info("lm-eval on %s took %.1f s", ", ".join(loaded), time.monotonic() - started)
        for task in loaded:
            res = results["results"][task]
            n = int(results["n-samples"][task]["effective"])
            rows[task] = [
                _row(task, m, float(res[f"{m},none"]), _float(res.get(f"{m}_stderr,none")), n)
                for m in METRICS
                if f"{m},none" in res
            ]
            for sample in results.get("samples", {}).get(task, []):
                items.extend({"task": task, "item": int(sample["doc_id"]), "metric": m, "value": float(sample[m])}
                             for m in METRICS if m in sample)
    return [row for task in tasks for row in rows[task]]


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # lm-eval writes "N/A" when it has no stderr
        return math.nan


# ---------------------------------------------------------------- ROUGE-L against the teacher


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = GEN_BATCH_SIZE) -> list[str]:
    """Greedy answers to `prompts` (decoder-only: left-padded, prompt tokens stripped).

    Prompts are tokenised with the tokenizer's defaults (special tokens
    included), as training code that calls `tokenizer(text)` sees them.
    """
    seq2seq = is_encoder_decoder(model)
    answers = []
    old_sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = "right" if seq2seq else "left"
    tokenizer.truncation_side = "left"  # a too-long prompt keeps its end, where the response starts
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
        for batch in tqdm(batches, desc="generate", unit="batch"):
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=MAX_PROMPT_TOKENS)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     num_beams=1, pad_token_id=pad_id)
            new = out if seq2seq else out[:, enc["input_ids"].shape[1] :]
            answers += [a.strip() for a in tokenizer.batch_decode(new, skip_special_tokens=True)]
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
                     threads: int = NUM_THREADS, items: list[dict] | None = None) -> list[dict]:
    """All evaluation rows of one student variant, with the columns in COLUMNS.

    Benchmark rows come from `run_benchmarks`; one more row (task
    "teacher_rougeL", metric "rougeL_f1") scores the held-out records. `items`, when
    given, receives every item's score, for paired comparisons between variants.
    """
    items = [] if items is None else items
    started = time.monotonic()
    model, tokenizer = load_variant(variant, model_path, threads=threads)
    size_mb = dir_size_mb(model_path)
    rows = run_benchmarks(model, tokenizer, tasks, root, Path(work_dir), limit, seed, items)
    if validation_records:
        rouge = rouge_vs_teacher(model, tokenizer, validation_records, prompt_fn, max_new_tokens)
        for instruction, answer, teacher in rouge["samples"]:
            log.info("sample: %r -> student %r | teacher %r", instruction, answer, teacher)
        rows.append(_row("teacher_rougeL", "rougeL_f1", rouge["value"], rouge["stderr"], rouge["n"]))
        items.extend({"task": "teacher_rougeL", "item": i, "metric": "rougeL_f1", "value": v}
                     for i, v in enumerate(rouge["scores"]))
    else:
        rows.append(_row("teacher_rougeL", "rougeL_f1", status="unavailable: no held-out validation records"))
    out = [{"student": student, "variant": variant, **row, "model_size_mb": size_mb} for row in rows]
    log.info("%s/%s: %d rows (%d ok) in %.1f s, %.1f MB", student, variant, len(out),
             sum(r["status"] == "ok" for r in out), time.monotonic() - started, size_mb)
    return [{k: r[k] for k in COLUMNS} for r in out]
