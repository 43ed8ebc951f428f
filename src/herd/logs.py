"""Send a job's logging and progress bars to its Snakemake log file."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import warnings


def to_file(path: str, append: bool = False) -> None:
    """Log to `path` (a fresh file per job run; `append` for the job's own child processes);
    stderr, where tqdm draws progress, goes there too."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not append:
        open(path, "w").close()  # a fresh file; then every writer appends, so none overwrites another
    stream = open(path, "a", buffering=1, encoding="utf-8")
    sys.stderr = stream
    # a native library that dies of a signal (SIGILL, SIGSEGV) leaves the Python stack it died
    # in, which the workflow's error handler reads to say what to try (herd.native.crash_advice)
    faulthandler.enable(file=stream, all_threads=False)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(stream)],
        force=True,
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
