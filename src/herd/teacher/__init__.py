"""The teacher: one interface for every generating stage, with a durable cache.

Modules, from the bottom up:

- `request`: Decoding, Request, Answer and the cache key of a request.
- `cache`: the SQLite answer cache and its leases (jobs sharing it never ask at once).
- `base`: `Teacher.answer`, the one cache protocol (look up, lease, generate the
  missing answers, store each as it arrives, count); backends implement `_generate`.
- backends: `llamacpp` (with `llamacpp_parallel`, continuous batching, and
  `llamacpp_probe`, run by herd.native to test kernels), `huggingface`
  (transformers), `vllm_offline`, `openai_chat` and `openai_batch`; the last two
  share `http_errors` and `rate_limits`.
- `factory`: the configured teacher (`make_teacher`, `job_config`).
"""

from herd.teacher.base import Teacher, check_failures
from herd.teacher.cache import LEASE_S, ResponseCache, holder_alive, new_holder
from herd.teacher.factory import RUN_ONLY_KEYS, job_config, make_teacher
from herd.teacher.request import Answer, Decoding, Request, request_key

__all__ = ["LEASE_S", "RUN_ONLY_KEYS", "Answer", "Decoding", "Request", "ResponseCache", "Teacher",
           "check_failures", "holder_alive", "job_config", "make_teacher", "new_holder", "request_key"]
