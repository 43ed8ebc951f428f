"""The configured teacher: which backend, built from the `teacher` config section."""

from __future__ import annotations

import os
from pathlib import Path

from herd.teacher.base import Teacher
from herd.teacher.cache import LEASE_S, ResponseCache
from herd.teacher.huggingface import TransformersTeacher
from herd.teacher.llamacpp import LlamaCppTeacher
from herd.teacher.openai_batch import OpenAIBatchTeacher
from herd.teacher.openai_chat import DEFAULT_DEADLINE_S, OpenAITeacher
from herd.teacher.vllm_offline import VLLMTeacher

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
        key_env = cfg["api_key_env"]
        api_key = (os.environ.get(key_env) or "").strip() if key_env else None
        if key_env and not api_key:
            raise RuntimeError(f"teacher.api_key_env: the environment variable {key_env} is not set (or empty)")
        deadline_s = cfg.get("request_deadline_s", DEFAULT_DEADLINE_S)
        if cfg["batch"]:
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
