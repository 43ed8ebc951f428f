"""The child process herd.native starts to try llama.cpp's kernels on this host:
`python -m herd.teacher.llamacpp_probe MODEL fast|safe THREADS`. It lives apart from herd.native so
that native, which the teacher imports, imports no teacher code back.
"""

from __future__ import annotations

import sys

from herd.native import load_llama
from herd.teacher.llamacpp_parallel import ParallelDecoder
from herd.teacher.request import Decoding, Request


def probe_llamacpp(path: str, kernels: str, threads: int) -> None:
    """What a teacher job does first, small: load the model, decode two prompts in one batch."""
    llm = load_llama(path, kernels, n_ctx=64, threads=threads)
    decoder = ParallelDecoder(llm, parallel=2, ctx_per_seq=256, threads=threads)
    ask = "List the planets of the solar system in order from the sun, then name the largest moon of each."
    requests = [Request([{"role": "user", "content": ask}], Decoding(temperature=0.0, top_p=1.0, max_tokens=4),
                        seed=i) for i in range(2)]
    answers = [a for _, a in decoder.generate(requests)]
    if not all(a.ok for a in answers):
        raise RuntimeError(f"probe decode failed: {[a.error for a in answers]}")
    decoder.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m herd.teacher.llamacpp_probe MODEL fast|safe THREADS")
    probe_llamacpp(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    print("probe ok")
