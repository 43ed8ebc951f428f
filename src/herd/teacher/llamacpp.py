"""The `llamacpp` teacher (the embedded default): a GGUF model run in process by llama.cpp."""

from __future__ import annotations

import logging
from pathlib import Path

from herd.teacher.base import Done, Teacher
from herd.teacher.cache import ResponseCache
from herd.teacher.request import Request

log = logging.getLogger(__name__)


class LlamaCppTeacher(Teacher):
    """`parallel` requests decoded together (continuous batching, herd.teacher.llamacpp_parallel)."""

    backend = "llamacpp"
    cpu_kernels = "auto"  # teacher.cpu_kernels: llama.cpp's fast kernels where they run (herd.native)

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
            from herd import native
            from herd.teacher.llamacpp_parallel import ParallelDecoder

            # tried in a child process first: a kernel this host cannot execute kills it, not us
            kernels = native.llamacpp_kernels(self.gguf_path, self.cpu_kernels, self.cache.path.parent,
                                              self.threads)
            log.info("llama.cpp: %s kernels (teacher.cpu_kernels: %s)", kernels, self.cpu_kernels)
            # this context only tokenizes; the decoder has its own, sized for `parallel` sequences
            self._llm = native.load_llama(self.gguf_path, kernels, n_ctx=64, threads=self.threads)
            self._decoder = ParallelDecoder(self._llm, self.parallel, self.n_ctx, self.threads)
        return self._decoder

    def _generate(self, todo: dict[str, Request], done: Done) -> None:
        keys = list(todo)
        for j, ans in self.decoder.generate(list(todo.values())):
            done(keys[j], ans)
