"""The teacher: one interface for every generating stage, with a durable cache.

Every answer is stored in a SQLite cache under a hash of (backend, model,
messages, decoding parameters, seed) the moment it arrives, so a job killed
halfway loses nothing and a rerun never asks the same question twice. The
cache lives outside results/ and survives deleting it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoding:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256


@dataclass
class Request:
    messages: list[dict]
    decoding: Decoding
    seed: int


@dataclass
class Answer:
    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def request_key(backend: str, model: str, req: Request) -> str:
    payload = {
        "backend": backend,
        "model": model,
        "messages": req.messages,
        "decoding": asdict(req.decoding),
        "seed": req.seed,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A SQLite table of answers; safe for several processes writing at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers ("
            " key TEXT PRIMARY KEY, answer TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> Answer | None:
        row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return Answer(**{**data, "cached": True})

    def put(self, key: str, answer: Answer) -> None:
        data = asdict(answer)
        data.pop("cached")
        self._db.execute(
            "INSERT OR REPLACE INTO answers (key, answer, created) VALUES (?, ?, ?)",
            (key, json.dumps(data, ensure_ascii=False), time.time()),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class Teacher:
    """Answers chat requests, through the cache. Subclasses implement `_generate`."""

    backend = "base"

    def __init__(self, model_id: str, cache: ResponseCache):
        self.model_id = model_id
        self.cache = cache
        self.stats = {"requests": 0, "cached": 0, "generated": 0, "failed": 0,
                      "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}

    def _generate(self, req: Request) -> Answer:
        raise NotImplementedError

    def _lookup(self, requests: list[Request]) -> tuple[list[str], list[Answer | None]]:
        """Cache keys of `requests` and their cached answers (None where not cached yet)."""
        keys = [request_key(self.backend, self.model_id, r) for r in requests]
        return keys, [self.cache.get(k) for k in keys]

    def _count(self, answers: list[Answer], seconds: float) -> None:
        """Add a finished call's answers to the statistics."""
        for ans in answers:
            self.stats["requests"] += 1
            self.stats["cached"] += ans.cached
            self.stats["generated"] += ans.ok and not ans.cached
            self.stats["failed"] += not ans.ok
            self.stats["prompt_tokens"] += ans.prompt_tokens
            self.stats["completion_tokens"] += ans.completion_tokens
        self.stats["seconds"] += seconds

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        answers = []
        start = time.perf_counter()
        for req in tqdm(requests, desc=desc, mininterval=5, unit="req"):
            key = request_key(self.backend, self.model_id, req)
            ans = self.cache.get(key)
            if ans is None:
                try:
                    ans = self._generate(req)
                except Exception as exc:  # recorded, never turned into an empty answer
                    log.warning("teacher request failed: %s", exc)
                    ans = Answer(text=None, error=f"{type(exc).__name__}: {exc}")
                if ans.ok:
                    self.cache.put(key, ans)
            answers.append(ans)
        self._count(answers, time.perf_counter() - start)
        return answers


class LlamaCppTeacher(Teacher):
    """A GGUF model run in process by llama.cpp (the embedded default), `parallel`
    requests decoded together (continuous batching, herd.llamacpp_parallel)."""

    backend = "llamacpp"

    def __init__(self, gguf_path: str | Path, model_id: str, cache: ResponseCache,
                 n_ctx: int = 2048, threads: int = 2, parallel: int = 32):
        super().__init__(model_id, cache)
        self.gguf_path = Path(gguf_path)
        self.n_ctx = n_ctx
        self.threads = threads
        self.parallel = parallel
        self._llm = self._decoder = None

    @property
    def decoder(self):
        if self._decoder is None:  # loaded lazily: a fully cached shard never loads the model
            from llama_cpp import Llama

            from herd.llamacpp_parallel import ParallelDecoder

            # this context only tokenizes; the decoder has its own, sized for `parallel` sequences
            self._llm = Llama(model_path=str(self.gguf_path), n_ctx=64, n_threads=self.threads, verbose=False)
            self._decoder = ParallelDecoder(self._llm, self.parallel, self.n_ctx, self.threads)
        return self._decoder

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        start = time.perf_counter()
        keys, answers = self._lookup(requests)
        todo = [i for i, a in enumerate(answers) if a is None]
        if todo:
            with tqdm(total=len(todo), desc=desc, mininterval=5, unit="req") as bar:
                for j, ans in self.decoder.generate([requests[i] for i in todo]):
                    i = todo[j]
                    if ans.ok:  # stored the moment it is finished
                        self.cache.put(keys[i], ans)
                    else:
                        log.warning("teacher request failed: %s", ans.error)
                    answers[i] = ans
                    bar.update()
        self._count(answers, time.perf_counter() - start)
        return answers


class TransformersTeacher(Teacher):
    """A Hugging Face model (a checkpoint directory, a Hub id, or a GGUF file) run with
    batched `generate`: the backend for GPU nodes. Requests are grouped by decoding
    settings; a batch samples with a seed derived from its requests' seeds."""

    backend = "transformers"

    def __init__(self, model_path: str, model_id: str, cache: ResponseCache, batch_size: int = 8):
        super().__init__(model_id, cache)
        self.model_path = str(model_path)
        self.batch_size = batch_size
        self._model = self._tok = None

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path, kwargs = self.model_path, {}
            if path.endswith(".gguf"):
                path, kwargs = str(Path(path).parent), {"gguf_file": Path(path).name}
            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            self._tok = AutoTokenizer.from_pretrained(path, padding_side="left", **kwargs)
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token
            self._model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, **kwargs).to(device).eval()
        return self._model, self._tok

    def _generate_batch(self, reqs: list[Request]) -> list[Answer]:
        import torch

        model, tok = self._load()
        texts = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in reqs]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        d = reqs[0].decoding
        torch.manual_seed(hash(tuple(r.seed for r in reqs)) & 0x7FFFFFFF)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=d.max_tokens, do_sample=d.temperature > 0,
                                 temperature=d.temperature or None, top_p=d.top_p if d.temperature > 0 else None,
                                 pad_token_id=tok.pad_token_id)
        answers = []
        width = enc["input_ids"].shape[1]
        for i, row in enumerate(out[:, width:]):
            ids = [t for t in row.tolist() if t != tok.pad_token_id]
            ended = bool(ids) and ids[-1] == tok.eos_token_id or len(ids) < d.max_tokens
            answers.append(Answer(text=tok.decode(ids, skip_special_tokens=True),
                                  finish_reason="stop" if ended else "length",
                                  prompt_tokens=int(enc["attention_mask"][i].sum()), completion_tokens=len(ids)))
        return answers

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        start = time.perf_counter()
        keys, answers = self._lookup(requests)
        todo = [i for i, a in enumerate(answers) if a is None]
        todo.sort(key=lambda i: (tuple(asdict(requests[i].decoding).values()), i))
        groups = [todo[j : j + self.batch_size] for j in range(0, len(todo), self.batch_size)]
        for group in tqdm(groups, desc=desc, mininterval=5, unit="batch"):
            by_decoding: dict = {}
            for i in group:
                by_decoding.setdefault(requests[i].decoding, []).append(i)
            for idx in by_decoding.values():
                try:
                    results = self._generate_batch([requests[i] for i in idx])
                except Exception as exc:  # recorded, never turned into an empty answer
                    results = [Answer(text=None, error=f"{type(exc).__name__}: {exc}") for _ in idx]
                for i, ans in zip(idx, results):
                    if ans.ok:
                        self.cache.put(keys[i], ans)
                    answers[i] = ans
        self._count(answers, time.perf_counter() - start)
        return answers


class VLLMTeacher(Teacher):
    """vLLM in process, for GPU nodes (optional extra: `pip install vllm`). Uncached
    requests go to `LLM.chat` `chunk` at a time (vLLM batches each chunk continuously),
    and a chunk's answers are cached as it finishes, so a killed job loses at most one
    chunk; each request keeps its own sampling seed."""

    backend = "vllm"
    chunk = 512

    def __init__(self, model_path: str, model_id: str, cache: ResponseCache):
        super().__init__(model_id, cache)
        self.model_path = str(model_path)
        self._llm = None

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        start = time.perf_counter()
        keys, answers = self._lookup(requests)
        todo = [i for i, a in enumerate(answers) if a is None]
        if todo:
            try:
                from vllm import LLM, SamplingParams
            except ImportError as exc:
                raise RuntimeError("teacher.backend vllm needs the optional package: pip install vllm") from exc
            if self._llm is None:
                self._llm = LLM(model=self.model_path)
            for c in range(0, len(todo), self.chunk):
                part = todo[c : c + self.chunk]
                params = [SamplingParams(temperature=requests[i].decoding.temperature,
                                         top_p=requests[i].decoding.top_p,
                                         max_tokens=requests[i].decoding.max_tokens, seed=requests[i].seed)
                          for i in part]
                outputs = self._llm.chat([requests[i].messages for i in part], params, use_tqdm=True)
                for i, out in zip(part, outputs):
                    gen = out.outputs[0]
                    ans = Answer(text=gen.text, finish_reason=gen.finish_reason,
                                 prompt_tokens=len(out.prompt_token_ids or []),
                                 completion_tokens=len(gen.token_ids))
                    self.cache.put(keys[i], ans)
                    answers[i] = ans
        self._count(answers, time.perf_counter() - start)
        return answers


def make_teacher(cfg: dict, manifest: dict, gguf_path: str | Path | None, threads: int,
                 job: str = "teacher") -> Teacher:
    """Build the configured teacher. `manifest` identifies the model (a GGUF file's sha256);
    `job` names the calling job (its Batch API state file)."""
    import os

    backend = cfg["backend"]
    cache = ResponseCache(Path(cfg["cache_dir"]) / "teacher.sqlite")
    if backend == "llamacpp":
        model_id = f"{manifest['name']}@{manifest['sha256']}"
        return LlamaCppTeacher(gguf_path, model_id, cache, n_ctx=cfg["n_ctx"], threads=threads,
                               parallel=cfg["parallel"])
    if backend == "vllm":
        return VLLMTeacher(cfg["model"], cfg["model_id"] or cfg["model"], cache)
    if backend == "transformers":
        model_id = f"{manifest['name']}@{manifest['sha256']}" if manifest.get("sha256") else cfg["model"]
        return TransformersTeacher(gguf_path or cfg["model"], model_id, cache, batch_size=cfg["batch_size"])
    if backend == "openai":
        from herd.openai_teacher import OpenAITeacher

        key_env = cfg["api_key_env"]
        api_key = os.environ.get(key_env) if key_env else None
        if key_env and not api_key:
            raise RuntimeError(f"teacher.api_key_env: the environment variable {key_env} is not set")
        if cfg["batch"]:
            from herd.openai_batch import OpenAIBatchTeacher

            return OpenAIBatchTeacher(cfg["base_url"], cfg["model"], api_key, cache,
                                      state_path=Path(cfg["cache_dir"]) / "batches" / f"{job}.json",
                                      poll_interval_s=cfg["poll_interval_s"], wait=cfg["batch_wait"],
                                      timeout_s=cfg["timeout_s"], max_retries=cfg["max_retries"],
                                      model_id=cfg["model_id"])
        return OpenAITeacher(cfg["base_url"], cfg["model"], api_key, cache,
                             max_in_flight=cfg["max_in_flight"],
                             requests_per_minute=cfg["requests_per_minute"],
                             tokens_per_minute=cfg["tokens_per_minute"],
                             timeout_s=cfg["timeout_s"], max_retries=cfg["max_retries"],
                             model_id=cfg["model_id"])
    raise ValueError(f"teacher.backend: unknown backend {backend!r}")


def check_failures(answers: list[Answer], max_failed_fraction: float, where: str) -> None:
    failed = [a for a in answers if not a.ok]
    if answers and len(failed) / len(answers) > max_failed_fraction:
        raise RuntimeError(
            f"{where}: {len(failed)} of {len(answers)} teacher requests failed "
            f"(more than {max_failed_fraction:.0%}); first error: {failed[0].error}. "
            "Answers that succeeded are cached; rerun to retry only the failed ones."
        )
