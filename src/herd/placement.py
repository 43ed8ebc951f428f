"""Where a job runs its model: the GPUs it asks for and sees, data-parallel processes, and
precision. Training (herd.students) and evaluation (herd.evaluation) follow the same rules."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    device: str = "cpu"  # "cpu" or "cuda"
    processes: int = 1  # data-parallel workers (one per GPU on CUDA)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; weights and optimizer stay fp32)


def placement(name: str, gpus: int | None, processes: int | None, precision: str,
              cuda_devices: int, bf16_supported: bool) -> Placement:
    """Where student `name` trains, from its config and what this job can see.

    gpus unset: one GPU when the job sees one, else the CPU. gpus 0: the CPU.
    gpus N: N GPUs, an error when the job sees fewer. processes: data-parallel
    workers, one per GPU (the only choice on GPUs); on the CPU it may be more than 1.
    precision auto: bf16 on GPUs that support it, else fp32."""
    key = f"students.{name}"
    if gpus is None:
        gpus = 1 if cuda_devices else 0
    if gpus > cuda_devices:
        raise RuntimeError(
            f"{key}.gpus is {gpus} but this job sees {cuda_devices} CUDA device(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
            "ask the cluster for them (profiles/slurm: rule students gets resources gpu) or set gpus: 0")
    if gpus:
        if processes not in (None, gpus):
            raise RuntimeError(f"{key}.processes is {processes}; on GPUs it is one per GPU ({gpus})")
        processes = gpus
    processes = processes or 1
    if precision == "auto":
        precision = "bf16" if gpus and bf16_supported else "fp32"
    elif precision == "bf16" and gpus and not bf16_supported:
        raise RuntimeError(f"{key}.precision is bf16 but this GPU has no bf16; use fp32")
    return Placement("cuda" if gpus else "cpu", processes, precision)


def local_placement(cfg: dict) -> Placement:
    """`placement` for this job's hardware."""
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    bf16 = bool(cuda) and torch.cuda.is_bf16_supported()
    return placement(cfg["name"], cfg.get("gpus"), cfg.get("processes"), cfg.get("precision", "auto"),
                     cuda, bf16)
