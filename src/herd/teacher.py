"""The teacher: one interface for every generating stage, with a durable cache.

Every answer is stored in a SQLite cache under a hash of (backend, model,
messages, decoding parameters, seed) the moment it arrives, so a job killed
halfway loses nothing and a rerun never asks the same question twice. The
cache lives outside results/ and survives deleting it.

Jobs that share the cache (shards, or two runs of the workflow at once) never
ask the same question at the same time: before generating, a teacher takes a
lease on each missing request key (table `leases`: key, holder, expires). A
heartbeat thread renews its leases every `lease_s / 3` while it works; a lease
ends when its answer is stored (in the same transaction), when the request
fails, or when the call ends. Keys leased by another live holder are waited
for: their answers are read from the cache as they arrive, and a key whose
lease lapses (its holder was killed) is taken over. A holder on this machine
whose process is gone is known to be dead at once; one elsewhere, only when
its lease expires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

LEASE_S = 120.0       # default teacher.lease_s: a killed holder's keys are free again after this
WAIT_POLL_S = 0.5     # how often a job waiting for another job's answers looks at the cache
WAIT_LOG_S = 60.0     # how often it says that it is still waiting


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


def _place() -> str | None:
    """This host and PID namespace, where a holder's PID can be checked; None where it cannot."""
    try:
        ns = os.stat("/proc/self/ns/pid")
        # cloned VMs share hostnames, and every host's first PID namespace has the same inode
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}.{ns.st_dev}.{ns.st_ino}"


def new_holder() -> str:
    """A lease holder id: place, PID and a random part (two teachers in one process differ)."""
    return f"{_place() or socket.gethostname() + '/?'}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_alive(holder: str) -> bool:
    """False only when `holder` ran here and its process is gone (or a zombie); else True."""
    place, _, pid_text = holder.rpartition(":")[0].rpartition(":")
    here = _place()
    if here is None or place != here:
        return True  # another machine or container: only the lease's expiry can tell
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    try:  # killed but not yet reaped by its parent: as dead as it gets
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True


class ResponseCache:
    """A SQLite table of answers, and the leases on questions being answered;
    safe for several processes writing at once."""

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
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS leases ("
            " key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL)"
        )

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now: no upgrade deadlock
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def get(self, key: str) -> Answer | None:
        row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return Answer(**{**data, "cached": True})

    def put(self, key: str, answer: Answer, holder: str | None = None) -> None:
        """Store `answer`; with `holder`, end that holder's lease on `key` in the same transaction."""
        data = asdict(answer)
        data.pop("cached")
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, answer, created) VALUES (?, ?, ?)",
                (key, json.dumps(data, ensure_ascii=False), time.time()),
            )
            if holder is not None:
                self._db.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))

    def lease(self, key: str) -> tuple[str, float] | None:
        """(holder, expiry time) of the lease on `key`, or None."""
        row = self._db.execute("SELECT holder, expires FROM leases WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def holders(self) -> dict[str, int]:
        """Each lease holder and how many keys it holds (expired leases included)."""
        return dict(self._db.execute("SELECT holder, COUNT(*) FROM leases GROUP BY holder").fetchall())

    def claim(self, keys: list[str], holder: str, lease_s: float,
              alive: Callable[[str], bool] = holder_alive) -> tuple[list[str], dict[str, str], list[str]]:
        """Lease to `holder`, for `lease_s` seconds, those of `keys` that are neither answered
        nor leased by another live holder, in one transaction.

        Returns (claimed, held: key -> other holder, answered). A lease that expired, or whose
        holder `alive` says is dead, is taken over; `holder`'s own leases are renewed.
        """
        verdicts: dict[str, bool] = {}

        def live(other: str) -> bool:
            if other not in verdicts:
                verdicts[other] = alive(other)
            return verdicts[other]

        def scan(now: float) -> tuple[list[str], dict[str, str], list[str]]:
            free, held, answered = [], {}, []
            for key in dict.fromkeys(keys):
                if self._db.execute("SELECT 1 FROM answers WHERE key = ?", (key,)).fetchone():
                    answered.append(key)
                elif (row := self.lease(key)) and row[0] != holder and row[1] > now and live(row[0]):
                    held[key] = row[0]
                else:
                    free.append(key)
            return free, held, answered

        free, held, answered = scan(time.time())
        if not free:  # read only: waiting jobs poll without taking the write lock
            return [], held, answered
        with self._transaction():
            now = time.time()
            free, held, answered = scan(now)  # again under the lock: someone may have come first
            self._db.executemany("INSERT OR REPLACE INTO leases (key, holder, expires) VALUES (?, ?, ?)",
                                 [(key, holder, now + lease_s) for key in free])
        return free, held, answered

    def lease_to(self, keys: list[str], holder: str, lease_s: float) -> None:
        """Lease `keys` to `holder` whoever held them (for a holder that owns them by other means,
        e.g. a submitted Batch API batch)."""
        with self._transaction():
            expires = time.time() + lease_s
            self._db.executemany("INSERT OR REPLACE INTO leases (key, holder, expires) VALUES (?, ?, ?)",
                                 [(key, holder, expires) for key in keys])

    def renew(self, holder: str, lease_s: float) -> int:
        """Push back the expiry of all of `holder`'s leases; how many it holds."""
        with self._transaction():
            return self._db.execute("UPDATE leases SET expires = ? WHERE holder = ?",
                                    (time.time() + lease_s, holder)).rowcount

    def release(self, holder: str, keys: list[str] | None = None) -> None:
        """End `holder`'s leases on `keys` (all of them when None)."""
        with self._transaction():
            if keys is None:
                self._db.execute("DELETE FROM leases WHERE holder = ?", (holder,))
            else:
                self._db.executemany("DELETE FROM leases WHERE key = ? AND holder = ?",
                                     [(key, holder) for key in keys])

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class _Heartbeat(threading.Thread):
    """Renews a holder's leases every lease_s / 3, on its own connection (SQLite's are per thread)."""

    def __init__(self, path: Path, holder: str, lease_s: float):
        super().__init__(name=f"lease-heartbeat-{holder}", daemon=True)
        self.path, self.holder, self.lease_s = path, holder, lease_s
        self._done = threading.Event()  # not `_stop`: Thread has a method of that name

    def run(self) -> None:
        cache = ResponseCache(self.path)
        try:
            while not self._done.wait(self.lease_s / 3):
                try:
                    cache.renew(self.holder, self.lease_s)
                except sqlite3.Error as exc:  # the next beat tries again; two misses are allowed
                    log.warning("could not renew the cache leases of %s: %s", self.holder, exc)
        finally:
            cache.close()

    def stop(self) -> None:
        self._done.set()
        self.join()


class Teacher:
    """Answers chat requests, through the cache. Subclasses implement `_generate`, or
    `answer` on top of `_answer_missing`, which keeps jobs from asking the same question at once."""

    backend = "base"
    wait_poll_s = WAIT_POLL_S

    def __init__(self, model_id: str, cache: ResponseCache, lease_s: float = LEASE_S):
        self.model_id = model_id
        self.cache = cache
        self.lease_s = lease_s
        self.holder = new_holder()
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

    # --- leases: one job at a time asks a question ------------------------------------------

    @contextmanager
    def _leasing(self):
        """Renew this teacher's leases while the body runs; end those left when it ends."""
        beat = _Heartbeat(self.cache.path, self.holder, self.lease_s)
        beat.start()
        try:
            yield
        finally:
            beat.stop()
            self.cache.release(self.holder)

    def _store(self, key: str, ans: Answer) -> None:
        """Cache a good answer and end its lease at once; a failed request's lease just ends."""
        if ans.ok:
            self.cache.put(key, ans, holder=self.holder)
        else:
            self.cache.release(self.holder, [key])

    def _answer_missing(self, keys: list[str], answers: list[Answer | None],
                        generate: Callable[[list[int]], None]) -> None:
        """Fill the None entries of `answers`: `generate(indices)` answers (and `_store`s) those
        this teacher leased; those another job holds are waited for, or taken over when their
        lease lapses."""
        todo = [i for i, a in enumerate(answers) if a is None]
        if not todo:
            return
        with self._leasing():
            now, others = self._claim(keys, answers, todo)
            while now or others.wait:
                if now:
                    generate(now)
                now = []
                while others.wait and not now:
                    time.sleep(others.interval)
                    now = others.poll()

    def _claim(self, keys: list[str], answers: list[Answer | None],
               todo: list[int]) -> tuple[list[int], _Others]:
        """Lease the keys of requests `todo` (indices): those to generate now, and the others
        (another job holds them). Requests answered meanwhile get their cached answer."""
        others = _Others(self, keys, answers, todo)
        now = others.poll(first=True)
        return now, others

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        start = time.perf_counter()
        keys, answers = self._lookup(requests)

        def generate(todo: list[int]) -> None:
            for i in tqdm(todo, desc=desc, mininterval=5, unit="req"):
                try:
                    ans = self._generate(requests[i])
                except Exception as exc:  # recorded, never turned into an empty answer
                    log.warning("teacher request failed: %s", exc)
                    ans = Answer(text=None, error=f"{type(exc).__name__}: {exc}")
                self._store(keys[i], ans)
                answers[i] = ans

        self._answer_missing(keys, answers, generate)
        self._count(answers, time.perf_counter() - start)
        return answers


class _Others:
    """Requests of one call that another job holds the leases of: polled until their answers
    arrive in the cache or their leases lapse (then they are leased for this teacher)."""

    def __init__(self, teacher: Teacher, keys: list[str], answers: list[Answer | None], wait: list[int]):
        self.teacher, self.keys, self.answers, self.wait = teacher, keys, answers, wait
        self.started = self.said = time.monotonic()
        self.interval = teacher.wait_poll_s  # seconds between polls

    def poll(self, first: bool = False) -> list[int]:
        """One look: take the answers that arrived, lease what is free; the indices now leased."""
        t, keys, answers = self.teacher, self.keys, self.answers
        t0 = time.perf_counter()
        todo = [i for i in self.wait if answers[i] is None]
        claimed, held, answered = t.cache.claim([keys[i] for i in todo], t.holder, t.lease_s)
        for i in todo:
            if keys[i] in answered:
                answers[i] = t.cache.get(keys[i])
        mine = set(claimed)
        now = [i for i in todo if keys[i] in mine]
        self.wait = [i for i in todo if keys[i] in held]
        holders = ", ".join(sorted(set(held.values())))
        if first:
            if self.wait:
                log.info("waiting for %d requests answered by another job (holder %s); a killed "
                         "job's leases lapse %g s after its last renewal (teacher.lease_s)",
                         len(self.wait), holders, t.lease_s)
        elif now:
            log.warning("took over %d requests another job left unanswered (they failed there, "
                        "or it was killed and its leases lapsed)", len(now))
        elif self.wait and time.monotonic() - self.said >= WAIT_LOG_S:
            self.said = time.monotonic()
            log.info("still waiting (%.0f s) for %d requests answered by another job (holder %s)",
                     self.said - self.started, len(self.wait), holders)
        # thousands of waiting keys make a poll slow: then poll less often, not busily
        self.interval = max(t.wait_poll_s, 10 * (time.perf_counter() - t0))
        return now


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

    cpu_kernels = "auto"  # teacher.cpu_kernels: llama.cpp's fast kernels where they run (herd.native)

    @property
    def decoder(self):
        if self._decoder is None:  # loaded lazily: a fully cached shard never loads the model
            from herd import native
            from herd.llamacpp_parallel import ParallelDecoder

            # tried in a child process first: a kernel this host cannot execute kills it, not us
            kernels = native.llamacpp_kernels(self.gguf_path, self.cpu_kernels, self.cache.path.parent,
                                              self.threads)
            log.info("llama.cpp: %s kernels (teacher.cpu_kernels: %s)", kernels, self.cpu_kernels)
            # this context only tokenizes; the decoder has its own, sized for `parallel` sequences
            self._llm = native.load_llama(self.gguf_path, kernels, n_ctx=64, threads=self.threads)
            self._decoder = ParallelDecoder(self._llm, self.parallel, self.n_ctx, self.threads)
        return self._decoder

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        start = time.perf_counter()
        keys, answers = self._lookup(requests)

        def generate(todo: list[int]) -> None:
            with tqdm(total=len(todo), desc=desc, mininterval=5, unit="req") as bar:
                for j, ans in self.decoder.generate([requests[i] for i in todo]):
                    i = todo[j]
                    self._store(keys[i], ans)  # stored the moment it is finished
                    if not ans.ok:
                        log.warning("teacher request failed: %s", ans.error)
                    answers[i] = ans
                    bar.update()

        self._answer_missing(keys, answers, generate)
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

        def generate(todo: list[int]) -> None:
            todo = sorted(todo, key=lambda i: (tuple(asdict(requests[i].decoding).values()), i))
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
                        self._store(keys[i], ans)
                        answers[i] = ans

        self._answer_missing(keys, answers, generate)
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

        def generate(todo: list[int]) -> None:
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
                    self._store(keys[i], ans)
                    answers[i] = ans

        self._answer_missing(keys, answers, generate)
        self._count(answers, time.perf_counter() - start)
        return answers


# teacher settings that change how a job runs, not what it answers: they are not rerun
# triggers (rules/common.smk leaves them out of params), so the jobs read them from the config
RUN_ONLY_KEYS = ("cpu_kernels", "lease_s", "request_deadline_s", "timeout_s", "max_retries", "max_in_flight",
                 "requests_per_minute", "tokens_per_minute", "poll_interval_s", "batch_wait")


def job_config(params_cfg: dict, config_cfg: dict) -> dict:
    """A job's teacher settings: those of its params, plus the run-only ones from the config."""
    return {**params_cfg, **{k: config_cfg[k] for k in RUN_ONLY_KEYS if k in config_cfg}}


def make_teacher(cfg: dict, manifest: dict, gguf_path: str | Path | None, threads: int,
                 job: str = "teacher") -> Teacher:
    """Build the configured teacher. `manifest` identifies the model (a GGUF file's sha256);
    `job` names the calling job (its Batch API state file)."""
    teacher = _make_backend(cfg, manifest, gguf_path, threads, job)
    teacher.lease_s = cfg.get("lease_s", LEASE_S)
    return teacher


def _make_backend(cfg: dict, manifest: dict, gguf_path: str | Path | None, threads: int, job: str) -> Teacher:
    backend = cfg["backend"]
    cache = ResponseCache(Path(cfg["cache_dir"]) / "teacher.sqlite")
    if backend == "llamacpp":
        model_id = f"{manifest['name']}@{manifest['sha256']}"
        teacher = LlamaCppTeacher(gguf_path, model_id, cache, n_ctx=cfg["n_ctx"], threads=threads,
                                  parallel=cfg["parallel"])
        teacher.cpu_kernels = cfg["cpu_kernels"]
        return teacher
    if backend == "vllm":
        return VLLMTeacher(cfg["model"], cfg["model_id"] or cfg["model"], cache)
    if backend == "transformers":
        model_id = f"{manifest['name']}@{manifest['sha256']}" if manifest.get("sha256") else cfg["model"]
        return TransformersTeacher(gguf_path or cfg["model"], model_id, cache, batch_size=cfg["batch_size"])
    if backend == "openai":
        from herd.openai_teacher import DEFAULT_DEADLINE_S, OpenAITeacher

        key_env = cfg["api_key_env"]
        api_key = (os.environ.get(key_env) or "").strip() if key_env else None
        if key_env and not api_key:
            raise RuntimeError(f"teacher.api_key_env: the environment variable {key_env} is not set (or empty)")
        deadline_s = cfg.get("request_deadline_s", DEFAULT_DEADLINE_S)
        if cfg["batch"]:
            from herd.openai_batch import OpenAIBatchTeacher

            return OpenAIBatchTeacher(cfg["base_url"], cfg["model"], api_key, cache,
                                      state_path=Path(cfg["cache_dir"]) / "batches" / f"{job}.json",
                                      poll_interval_s=cfg["poll_interval_s"], wait=cfg["batch_wait"],
                                      timeout_s=cfg["timeout_s"], max_retries=cfg["max_retries"],
                                      request_deadline_s=deadline_s, model_id=cfg["model_id"])
        return OpenAITeacher(cfg["base_url"], cfg["model"], api_key, cache,
                             max_in_flight=cfg["max_in_flight"],
                             requests_per_minute=cfg["requests_per_minute"],
                             tokens_per_minute=cfg["tokens_per_minute"],
                             timeout_s=cfg["timeout_s"], max_retries=cfg["max_retries"],
                             request_deadline_s=deadline_s, model_id=cfg["model_id"])
    raise ValueError(f"teacher.backend: unknown backend {backend!r}")


def check_failures(answers: list[Answer], max_failed_fraction: float, where: str) -> None:
    failed = [a for a in answers if not a.ok]
    if answers and len(failed) / len(answers) > max_failed_fraction:
        raise RuntimeError(
            f"{where}: {len(failed)} of {len(answers)} teacher requests failed "
            f"(more than {max_failed_fraction:.0%}); first error: {failed[0].error}. "
            "Answers that succeeded are cached; rerun to retry only the failed ones."
        )
