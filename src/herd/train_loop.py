"""The optimisation loop of a student's training (herd.students sets it up and saves the result).

One process's part of it: the AdamW optimizer with its warmup-and-decay schedule, resuming
from a checkpoint, each optimizer step as the token-weighted accumulation of its
micro-batches (shared out over the processes), and a checkpoint every so many steps.
The order of random draws is part of the result: a resumed run draws exactly what the
killed one would have, so nothing here may add, drop or reorder a draw.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from herd import train_state
from herd.batching import IGNORE, epoch_batches, input_tokens, make_batch, useful_tokens
from herd.placement import Placement


def autocast(place: Placement):
    if place.precision == "bf16":
        return torch.autocast(device_type=place.device, dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class Progress:
    """Where a run stands: what a checkpoint keeps of it besides the weights and generators."""
    history: list[float] = field(default_factory=list)  # each step's loss
    norms: list[float] = field(default_factory=list)  # each step's gradient norm, before clipping
    tokens: int = 0  # this process's input tokens (a resumed rank 0 starts from the run's total)
    useful: int = 0  # this process's response tokens, likewise
    step: int = 0
    epoch: int = 0
    position: int = 0  # the micro-batch of the epoch to go on from
    seconds_before: float = 0.0  # training time before this run resumed
    val_before: float | None = None

    def checkpoint(self, position: int, seconds: float) -> dict:
        return {"history": self.history, "norms": self.norms, "tokens": self.tokens, "useful": self.useful,
                "step": self.step, "epoch": self.epoch, "position": position, "val_before": self.val_before,
                "seconds": seconds}


@dataclass
class Trainer:
    """What one process's steps work with."""
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    opt: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    place: Placement
    device: torch.device
    rank: int
    world: int
    pad_id: int
    enc_dec: bool
    packed: bool


def optimizer(model, learning_rate: float, weight_decay: float, warmup: int, total_steps: int):
    """AdamW (no decay on biases and norms) with a linear warmup and a linear decay to 0."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(warmup, 1), max(0.0, (total_steps - s) / max(total_steps - warmup, 1)))
    )
    return opt, schedule


def resume(state: dict, model, opt, schedule, gen: torch.Generator, rank: int) -> Progress:
    """Load a checkpoint's weights, optimizer, schedule and data-order generator; its progress.

    The processes' RNG states are set apart (train_state.set_rng_state), after everything
    else that could draw from them."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["scheduler"])
    gen.set_state(state["epoch_generator"])
    p = state["progress"]
    tokens, useful = (p["tokens"], p["useful"]) if rank == 0 else (0, 0)  # totals: summed at the end
    return Progress(history=p["history"], norms=p["norms"], tokens=tokens, useful=useful, step=p["step"],
                    epoch=p["epoch"], position=p["position"], seconds_before=p["seconds"],
                    val_before=p["val_before"])


def optimizer_step(t: Trainer, group: list[list[int]], examples: list[dict], progress: Progress) -> float:
    """One optimizer step over the micro-batches `group` (of every process); its loss."""
    n_targets = sum(sum(1 for tok in examples[k]["labels"] if tok != IGNORE) for m in group for k in m)
    # this process's share; a process left without one (short last step of an epoch)
    # runs a zero-weighted batch so that every process joins the gradient all-reduce
    share = group[t.rank::t.world]
    mine, weight = (share, 1.0) if share else ([group[0]], 0.0)
    step_loss = torch.zeros((), dtype=torch.float64, device=t.device)
    for i, m in enumerate(mine):
        batch = make_batch([examples[k] for k in m], t.pad_id, t.packed)
        n = useful_tokens(batch)  # counted on the CPU: no GPU sync
        if share:  # enc-dec: the targets run through the decoder as well
            progress.tokens += input_tokens(batch) + (n if t.enc_dec else 0)
            progress.useful += n
        batch = {k: v.to(t.device, non_blocking=True) for k, v in batch.items()}
        # DDP averages gradients over processes; x world undoes that, so the step's
        # gradient is the token-weighted mean over every micro-batch of every process
        sync = t.net.no_sync() if t.world > 1 and i < len(mine) - 1 else nullcontext()
        with sync:
            with autocast(t.place):
                loss = t.net(**batch, use_cache=False).loss.float() * n / max(n_targets, 1) * weight
            (loss * t.world).backward()
        step_loss += loss.detach().double()
    if t.world > 1:  # the step's loss over all processes, for the bar and the history
        dist.all_reduce(step_loss)
    step_loss = step_loss.item()
    progress.norms.append(float(torch.nn.utils.clip_grad_norm_(t.model.parameters(), 1.0)))
    t.opt.step()
    t.schedule.step()
    t.opt.zero_grad(set_to_none=True)
    progress.step += 1
    progress.history.append(step_loss)
    return step_loss


def run(t: Trainer, progress: Progress, gen: torch.Generator, examples: list[dict], lengths: list[int],
        batching: str, batch_size: int, per_step: int, total_steps: int,
        ckpt: tuple[Path, str] | None, checkpoint_every: int) -> float:
    """Train from `progress` to `total_steps`, `per_step` micro-batches a step; the run's training
    seconds (checkpoint writes left out)."""
    if t.place.device == "cuda":
        torch.cuda.synchronize(t.device)
    start, paused = time.perf_counter(), 0.0
    bar = tqdm(total=total_steps, initial=progress.step, desc="train", mininterval=5, unit="step",
               disable=t.rank != 0)
    while progress.step < total_steps:
        epoch_gen = gen.get_state()  # the epoch's plan is drawn from here: a checkpoint keeps it
        order = torch.randperm(len(examples), generator=gen).tolist()
        micro = epoch_batches(order, lengths, batch_size, batching, gen)
        for j in range(progress.position, len(micro), per_step):
            step_loss = optimizer_step(t, micro[j : j + per_step], examples, progress)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
            if progress.step >= total_steps:
                break
            if ckpt and progress.step % checkpoint_every == 0:
                t0 = time.perf_counter()
                train_state.save_from_processes(
                    ckpt, t.rank, t.world, t.model, t.opt, t.schedule, epoch_gen,
                    progress.checkpoint(j + per_step, progress.seconds_before + t0 - start - paused))
                paused += time.perf_counter() - t0
        progress.epoch, progress.position = progress.epoch + 1, 0
    bar.close()
    if t.place.device == "cuda":
        torch.cuda.synchronize(t.device)
    return progress.seconds_before + time.perf_counter() - start - paused
