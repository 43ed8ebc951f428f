"""Preemption-safe training: atomic checkpoints of everything a run needs to continue.

A checkpoint is a folder (results/students/{student}/checkpoint) holding `state.pt` (model,
optimizer and scheduler state, RNG states of every process, the data-order generator, progress)
and `meta.json` (step, fingerprint; written last). It is written into a temporary folder beside
it, fsynced, then renamed into place; the previous checkpoint is moved aside first and removed
after, so a kill at any moment leaves either the new or the old one whole. The fingerprint
covers everything that decides the run's result (train config, seed, data rows, base checkpoint,
processes, precision): a checkpoint of other settings is ignored, with a log line, not resumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

STATE, META = "state.pt", "meta.json"


def _rows_hash(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def _dir_hash(path: Path) -> str:
    """Content hash of a checkpoint folder (every file, by relative name)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def fingerprint(settings: dict, base_dir: Path, train_rows: list[dict], val_rows: list[dict]) -> str:
    """One hash of what the run's weights depend on."""
    parts = {"settings": settings, "train": _rows_hash(train_rows), "validation": _rows_hash(val_rows),
             "base": _dir_hash(base_dir)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def rng_state() -> dict:
    """This process's random states: torch CPU (and CUDA where present), python, numpy."""
    import numpy as np

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _old(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def save(path: Path, state: dict, meta: dict) -> None:
    """Write the checkpoint atomically: temp folder, fsync, rename; keep only the newest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        torch.save(state, tmp / STATE)
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for f in (tmp / STATE, tmp / META, tmp):
            _fsync(f)
        old = _old(path)
        if not path.exists():  # first save, or a kill left only the set-aside copy: keep it until the new one is in
            os.replace(tmp, path)
            _fsync(path.parent)
            shutil.rmtree(old, ignore_errors=True)
            return
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load(path: Path, expected: str) -> dict | None:
    """The checkpoint's state when it is whole and of this run (same fingerprint), else None.

    A kill between moving the old checkpoint aside and renaming the new one leaves only the
    old one (`.checkpoint.old`): it is used then."""
    path = Path(path)
    for cand in (path, _old(path)):
        meta_file = cand / META
        if not meta_file.is_file() or not (cand / STATE).is_file():
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as e:
            log.warning("checkpoint %s is unreadable (%s): starting from the base checkpoint", meta_file, e)
            return None
        if meta.get("fingerprint") != expected:
            log.warning("checkpoint %s (step %s) is of other settings, data or base weights than this "
                        "run (fingerprint %.12s, this run %.12s): ignored, starting from the beginning",
                        cand, meta.get("step"), meta.get("fingerprint", "?"), expected)
            return None
        state = torch.load(cand / STATE, map_location="cpu", weights_only=False)
        state["meta"] = meta
        return state
    return None


def clear(path: Path) -> None:
    """Remove the checkpoint, its set-aside predecessor and temporary folders of killed writes."""
    path = Path(path)
    for p in [path, _old(path), *path.parent.glob(f".{path.name}.*.tmp")]:
        shutil.rmtree(p, ignore_errors=True)


def save_from_processes(ckpt: tuple[Path, str], rank: int, world: int, model, opt, schedule,
                        epoch_gen: torch.Tensor, progress: dict) -> None:
    """Rank 0 writes the run's state, with the RNG states of every process."""
    rng = rng_state()
    if world > 1:
        states = [None] * world
        dist.all_gather_object(states, (rng, progress["tokens"], progress["useful"]))
        # token counters are per process until the end: the checkpoint holds the run's totals
        # (a resumed rank 0 starts from them, the other ranks from 0)
        progress = {**progress, "tokens": sum(s[1] for s in states), "useful": sum(s[2] for s in states)}
        states = [s[0] for s in states]
    else:
        states = [rng]
    if rank == 0:
        save(ckpt[0], {"model": model.state_dict(), "optimizer": opt.state_dict(),
                       "scheduler": schedule.state_dict(), "epoch_generator": epoch_gen,
                       "rng": states, "progress": progress},
             {"step": progress["step"], "fingerprint": ckpt[1]})
        log.info("checkpoint at step %d: %s", progress["step"], ckpt[0])
    if world > 1:  # no process runs ahead of a checkpoint it would have to be resumed from
        dist.barrier()
