"""Score the teacher on the students' lm-eval benchmarks, so results/eval.csv can set them side by side.

- `LlamaCppLM` is an lm-eval `LM` over an in-process llama.cpp model (the
  workflow's GGUF teacher). It tokenises as `herd.evaluation.HerdLM` does and
  reads each continuation's log-probs from llama.cpp's logits. lm-eval asks
  for one context with every answer choice: requests are sorted so those
  sharing a context come together, and the context's KV cache and logit rows
  are kept, so only each choice's own tokens are evaluated.
- A `transformers` teacher is scored by `HerdLM` itself; `openai` and `vllm`
  teachers give no prompt log-likelihoods, so they get "unsupported" rows.
- `evaluate_teacher` returns the teacher's rows with herd.evaluation.COLUMNS.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from lm_eval.api.model import TemplateLM
from tqdm import tqdm

from herd import evaluation, lm_adapter, native
from herd.io import dir_size_mb
from herd.prompts import student_prompt

log = logging.getLogger(__name__)

STUDENT = VARIANT = "teacher"  # the teacher's rows in results/eval.csv
NO_LOGLIKELIHOOD = ("openai", "vllm")  # backends that only return generated text
DEFAULT_N_CTX = 2048


class LlamaCppLM(lm_adapter.ChoicesOnly, TemplateLM):
    """lm-eval `LM` over a `llama_cpp.Llama` loaded with `logits_all=True`.

    Tokenisation follows `HerdLM`: lm-eval's `TemplateLM` splits context and
    continuation; the vocabulary's own default decides whether a BOS is added
    (never a second one); special-token text is parsed as special tokens, as a
    Hugging Face tokenizer does; an empty context becomes the BOS token, else
    EOS. Inputs longer than the context window are cut on the left.

    With `reuse_prefix`, requests are sorted by context, and a context the
    model has just evaluated keeps its KV cache and logit rows: only the
    continuation is evaluated. `stats` counts the tokens evaluated and reused.
    The adapter owns `llm`: other calls on it between requests are noticed
    (the head is evaluated again), but cost the reuse.
    """

    def __init__(self, llm, reuse_prefix: bool = True):
        super().__init__()
        if not getattr(llm, "_logits_all", False):
            raise ValueError("LlamaCppLM needs a llama_cpp.Llama loaded with logits_all=True")
        self.llm = llm
        self.reuse_prefix = reuse_prefix
        self.max_length = llm.n_ctx()
        bos = llm.token_bos()
        self._bos = bos if bos >= 0 else None
        self._bos_text = llm.detokenize([bos], special=True).decode("utf-8", "replace") if self._bos is not None else ""
        self._head: list[int] | None = None  # the tokens whose KV cache and logit rows llm holds from 0
        self.stats = {"requests": 0, "evaluated_tokens": 0, "reused_tokens": 0, "seconds": 0.0}

    @property
    def eot_token_id(self) -> int:
        return self.llm.token_eos()

    @property
    def prefix_token_id(self) -> int:
        return self._bos if self._bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        if add_special_tokens is None:
            add_special_tokens = not (self._bos_text and string.startswith(self._bos_text))
        # llama.cpp's add_bos adds a BOS only where the vocabulary asks for one, like HF's add_special_tokens
        return self.llm.tokenize(string.encode("utf-8"), add_bos=add_special_tokens, special=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Score (key, context tokens, continuation tokens) requests; results in input order."""
        started = time.monotonic()
        parts = [self._split(ctx, cont) for _, ctx, cont in requests]
        order = range(len(parts))
        if self.reuse_prefix:  # requests with the same context next to each other
            order = sorted(order, key=lambda i: parts[i])
        results: list[tuple[float, bool] | None] = [None] * len(parts)
        for i in tqdm(order, desc="loglikelihood", unit="req", mininterval=5, disable=disable_tqdm):
            results[i] = self._score(*parts[i])
        self.stats["requests"] += len(parts)
        self.stats["seconds"] += time.monotonic() - started
        return results

    def _split(self, context: list[int], continuation: list[int]) -> tuple[list[int], list[int], list[int]]:
        """(head, tail, targets): the input, as HerdLM builds it, cut where the continuation starts.

        As in HerdLM, the input is context+continuation minus its last token, cut on the
        left to the window; the logit rows of its last len(targets) positions predict the
        targets (the continuation). The head ends with the last context token.
        """
        inp = (context + continuation)[-(self.max_length + 1):][:-1]
        targets = continuation[-len(inp):] if continuation else []
        cut = len(inp) - len(targets) + 1
        return inp[:cut], inp[cut:], targets

    def _score(self, head: list[int], tail: list[int], targets: list[int]) -> tuple[float, bool]:
        """Sum of the targets' log-probs after head+tail, and whether each is the argmax.

        The head is evaluated in one call and the tail in another, whether the head is
        reused or not: llama.cpp's logits depend on how tokens are batched (by up to ~0.1
        nats here between one call and two), so a fixed cut keeps each score a function of
        its own request, the same in any order and with or without reuse.
        """
        if not targets:
            return 0.0, True
        llm = self.llm
        if self.reuse_prefix and self._head == head and llm.n_tokens >= len(head) \
                and llm.input_ids[: len(head)].tolist() == head:
            self.stats["reused_tokens"] += len(head)
        else:
            llm.n_tokens = 0  # Llama.eval drops the KV cache from n_tokens on
            llm.eval(head)
            self._head = head
            self.stats["evaluated_tokens"] += len(head)
        llm.n_tokens = len(head)  # the previous request's tail goes
        if tail:
            llm.eval(tail)
            self.stats["evaluated_tokens"] += len(tail)
        end = len(head) + len(tail)
        rows = llm.scores[end - len(targets): end].astype(np.float64)
        peak = rows.max(axis=1, keepdims=True)
        logz = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
        target = np.asarray(targets)
        picked = rows[np.arange(len(targets)), target]
        return float((picked - logz).sum()), bool((rows.argmax(axis=1) == target).all())


# ---------------------------------------------------------------- loading


def load_llamacpp(gguf_path: str | Path, cpu_kernels: str, cache_dir: str | Path, n_ctx: int, threads: int):
    """A llama_cpp.Llama with logits for every position, on the kernels this host runs (herd.native)."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"teacher GGUF {gguf_path} does not exist (built by rule teacher_model from teacher.model)")
    # tried in a child process first: a kernel this host cannot execute kills the child, not this job
    kernels = native.llamacpp_kernels(gguf_path, cpu_kernels, cache_dir, threads)
    log.info("llama.cpp: %s kernels (teacher.cpu_kernels: %s)", kernels, cpu_kernels)
    return native.load_llama(gguf_path, kernels, n_ctx=n_ctx, threads=threads, n_threads_batch=threads,
                             logits_all=True)


def load_transformers(model_path: str | Path, threads: int) -> evaluation.HerdLM:
    """`HerdLM` over the teacher as AutoModelForCausalLM on the CPU: a checkpoint directory, a Hub id or a .gguf file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, kwargs = str(model_path), {}
    if path.endswith(".gguf"):  # transformers reads a GGUF file from its folder, dequantized
        path, kwargs = str(Path(path).parent), {"gguf_file": Path(path).name}
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs).eval()
    return evaluation.HerdLM(model, tokenizer)


def _size_mb(path: str | Path | None) -> float:
    return dir_size_mb(path) if path is not None and Path(path).exists() else math.nan


def teacher_lm(teacher_cfg: dict, gguf_path: str | Path | None, threads: int):
    """(lm-eval LM, model size in MB) for the configured teacher backend (llamacpp or transformers)."""
    backend = teacher_cfg["backend"]
    if backend == "llamacpp":
        if gguf_path is None:
            raise ValueError("teacher.backend llamacpp: no GGUF file given (results/teacher_model/model.gguf)")
        llm = load_llamacpp(gguf_path, teacher_cfg.get("cpu_kernels", "auto"), teacher_cfg["cache_dir"],
                            teacher_cfg.get("n_ctx", DEFAULT_N_CTX), threads)
        return LlamaCppLM(llm), _size_mb(gguf_path)
    if backend == "transformers":
        path = gguf_path or teacher_cfg["model"]
        return load_transformers(path, threads), _size_mb(path)
    raise ValueError(f"teacher.backend: {backend!r} has no in-process model to score")


# ---------------------------------------------------------------- the teacher's rows


def evaluate_teacher(teacher_cfg: dict, manifest: dict, gguf_path: str | Path | None, tasks: list[str],
                     root: Path | None, work_dir: Path, limit: int | None, seed: int,
                     threads: int = evaluation.NUM_THREADS, items: list[dict] | None = None,
                     instruction_template: bool = False, prompt_fn: Callable[[str], str] = student_prompt,
                     ) -> list[dict]:
    """The teacher's benchmark rows (columns herd.evaluation.COLUMNS, student and variant "teacher").

    The same items as the students' (same tasks, root, limit and seed); with
    `instruction_template` the contexts go through `prompt_fn` as theirs do. No
    ROUGE row: the teacher wrote the references. Backends without prompt
    log-likelihoods (openai, vllm) give one "unsupported" row per task.
    `items`, when given, receives every item's score.
    """
    started = time.monotonic()
    backend = teacher_cfg["backend"]
    if backend in NO_LOGLIKELIHOOD:
        status = f"unsupported: teacher backend {backend} gives no prompt log-likelihoods"
        log.warning("%s (teacher.backend); the teacher's benchmark rows say so", status)
        prompt = lm_adapter.INSTRUCTION_TEMPLATE if instruction_template else lm_adapter.PLAIN
        rows = [evaluation.status_row(t, status, root, prompt) for t in tasks]
        size_mb = math.nan
    else:
        lm, size_mb = teacher_lm(teacher_cfg, gguf_path, threads)
        scorer = evaluation.InstructionTemplateLM(lm, prompt_fn) if instruction_template else lm
        rows = evaluation.run_benchmarks(scorer, tasks, root, Path(work_dir), limit, seed, items)
        if isinstance(lm, LlamaCppLM):
            st = lm.stats
            log.info("llama.cpp: %d requests in %.1f s (%.2f req/s); %d tokens evaluated, %d reused from the "
                     "context before", st["requests"], st["seconds"], st["requests"] / max(st["seconds"], 1e-9),
                     st["evaluated_tokens"], st["reused_tokens"])
            lm.llm.close()  # frees the logit table (n_ctx x vocabulary floats) now
    out = [{**row, "student": STUDENT, "variant": VARIANT, "model_size_mb": size_mb} for row in rows]
    log.info("teacher %s (%s): %d rows (%d ok) in %.1f s, %.1f MB", manifest.get("name"), backend, len(out),
             sum(r["status"] == "ok" for r in out), time.monotonic() - started, size_mb)
    return [{k: r[k] for k in evaluation.COLUMNS} for r in out]
