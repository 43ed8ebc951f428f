"""Fine-tune a student on the distilled data, with the loss on response tokens only.

Decoder-only students see prompt + response + EOS with the prompt positions
masked (-100); encoder-decoder students read the prompt and are trained to
write the response. A short, linear AdamW loop with linear warmup and decay.

Where it runs (`Placement`): on the CPU, or on CUDA GPUs in bf16 autocast with
fp32 master weights. With more than one process the job is data parallel
(DistributedDataParallel; NCCL between GPUs, gloo between CPU processes): each
optimizer step takes `batch_size x grad_accum` rows per process, and the
gradient is the token-weighted mean over all of them, the same gradient one
process would get with `grad_accum x processes` micro-batches.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from herd import logs
from herd.compute import gpu_peak_tflops, training_flops
from herd.placement import Placement
from herd.io import atomic_dir
from herd.prompts import student_prompt

log = logging.getLogger(__name__)

IGNORE = -100

@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float
    epochs: float
    batch_size: int
    grad_accum: int
    max_length: int
    warmup_ratio: float
    weight_decay: float
    max_steps: int | None  # optimizer steps; None: run the epochs
    seed: int


def encode_causal(tok, instruction: str, response: str, max_length: int) -> dict:
    prompt = tok(student_prompt(instruction), add_special_tokens=False)["input_ids"]
    answer = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = (prompt + answer)[:max_length]
    labels = ([IGNORE] * len(prompt) + answer)[:max_length]
    return {"input_ids": ids, "labels": labels}


def encode_seq2seq(tok, instruction: str, response: str, max_length: int) -> dict:
    prompt = tok(student_prompt(instruction), add_special_tokens=False)["input_ids"][:max_length]
    answer = (tok(response, add_special_tokens=False)["input_ids"])[: max_length - 1] + [tok.eos_token_id]
    return {"input_ids": prompt, "labels": answer}


def collate(batch: list[dict], pad_id: int) -> dict:
    width = max(len(b["input_ids"]) for b in batch)
    lwidth = max(len(b["labels"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), lwidth), IGNORE, dtype=torch.long)
    for i, b in enumerate(batch):
        ids[i, : len(b["input_ids"])] = torch.tensor(b["input_ids"])
        mask[i, : len(b["input_ids"])] = 1
        labels[i, : len(b["labels"])] = torch.tensor(b["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def load_base(base_dir: Path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(base_dir)
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    model = cls.from_pretrained(base_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok, cfg.is_encoder_decoder


def _autocast(place: Placement):
    if place.precision == "bf16":
        return torch.autocast(device_type=place.device, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def mean_loss(model, examples: list[dict], pad_id: int, batch_size: int,
              place: Placement = Placement(), device: torch.device | str = "cpu",
              rank: int = 0, world: int = 1) -> float | None:
    """Token-weighted mean loss; with `world` processes each takes every world-th batch
    and the sums are all-reduced, so every process gets the same value."""
    if not examples:
        return None
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss x tokens, tokens
    for i in range(rank * batch_size, len(examples), batch_size * world):
        batch = collate(examples[i : i + batch_size], pad_id)
        n = int((batch["labels"] != IGNORE).sum())
        with _autocast(place):
            sums[0] += model(**{k: v.to(device) for k, v in batch.items()}).loss.double() * n
        sums[1] += n
    if world > 1:
        dist.all_reduce(sums)
    model.train()
    return float(sums[0] / sums[1].clamp(min=1))


def train(base_dir: Path, train_rows: list[dict], val_rows: list[dict], cfg: TrainConfig,
          output: Path, place: Placement = Placement(), threads: int | None = None,
          log_path: str | None = None) -> dict:
    """Fine-tune the checkpoint in `base_dir`; save to `output`; return metrics.

    With more than one process, spawns them (torch.multiprocessing, rendezvous on
    loopback) and they append their logging to `log_path`; the caller's main module must be
    import-safe (`if __name__ == "__main__"`)."""
    threads = threads or torch.get_num_threads()
    if place.processes == 1:
        return _train(0, base_dir, train_rows, val_rows, cfg, output, place, threads, None, None, None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="herd-train-") as tmp:
        result = Path(tmp) / "metrics.json"
        torch.multiprocessing.spawn(
            _train, nprocs=place.processes, join=True,
            args=(base_dir, train_rows, val_rows, cfg, output, place,
                  max(1, threads // place.processes), port, result, log_path))
        return json.loads(result.read_text())


def _train(rank: int, base_dir, train_rows, val_rows, cfg: TrainConfig, output, place: Placement,
           threads: int, port: int | None, result: Path | None, log_path: str | None) -> dict:
    world = place.processes
    if log_path:
        logs.to_file(log_path, append=True)
        log.info("process %d of %d started", rank, world)
    torch.set_num_threads(threads)
    if place.device == "cuda":
        torch.cuda.set_device(rank)
    if world > 1:
        dist.init_process_group("nccl" if place.device == "cuda" else "gloo",
                                init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                device_id=torch.device("cuda", rank) if place.device == "cuda" else None)
    try:
        metrics = _loop(rank, world, Path(base_dir), train_rows, val_rows, cfg, Path(output), place)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0 and result is not None:
        result.write_text(json.dumps(metrics))
    return metrics


def _loop(rank: int, world: int, base_dir: Path, train_rows, val_rows, cfg: TrainConfig,
          output: Path, place: Placement) -> dict:
    torch.manual_seed(cfg.seed + rank)  # dropout masks differ between processes
    if place.precision == "bf16":  # fp32 stays strict fp32
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device = torch.device(place.device, rank) if place.device == "cuda" else torch.device("cpu")
    model, tok, enc_dec = load_base(base_dir)
    model.to(device)
    encode = encode_seq2seq if enc_dec else encode_causal
    train_ex = [encode(tok, r["instruction"], r["response"], cfg.max_length) for r in train_rows]
    val_ex = [encode(tok, r["instruction"], r["response"], cfg.max_length) for r in val_rows]
    if not train_ex:
        raise ValueError("no training rows")

    per_step = cfg.grad_accum * world  # micro-batches in one optimizer step, over all processes
    steps_per_epoch = math.ceil(len(train_ex) / (cfg.batch_size * per_step))
    total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    warmup = int(total_steps * cfg.warmup_ratio)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(warmup, 1), max(0.0, (total_steps - s) / max(total_steps - warmup, 1)))
    )

    gen = torch.Generator().manual_seed(cfg.seed)  # same order in every process
    val_before = mean_loss(model, val_ex, tok.pad_token_id, cfg.batch_size, place, device, rank, world)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[rank] if place.device == "cuda" else None)
    model.train()
    history, norms, tokens, step = [], [], 0, 0
    if place.device == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc="train", mininterval=5, unit="step", disable=rank != 0)
    while step < total_steps:
        order = torch.randperm(len(train_ex), generator=gen).tolist()
        micro = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for j in range(0, len(micro), per_step):
            group = micro[j : j + per_step]
            n_targets = sum(sum(1 for t in train_ex[k]["labels"] if t != IGNORE) for m in group for k in m)
            # this process's share; a process left without one (short last step of an epoch)
            # runs a zero-weighted batch so that every process joins the gradient all-reduce
            share = group[rank::world]
            mine, weight = (share, 1.0) if share else ([group[0]], 0.0)
            step_loss = torch.zeros((), dtype=torch.float64, device=device)
            for i, m in enumerate(mine):
                batch = collate([train_ex[k] for k in m], tok.pad_token_id)
                n = int((batch["labels"] != IGNORE).sum())  # counted on the CPU: no GPU sync
                if share:  # enc-dec: the targets run through the decoder as well
                    tokens += int(batch["attention_mask"].sum()) + (n if enc_dec else 0)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                # DDP averages gradients over processes; x world undoes that, so the step's
                # gradient is the token-weighted mean over every micro-batch of every process
                sync = net.no_sync() if world > 1 and i < len(mine) - 1 else nullcontext()
                with sync:
                    with _autocast(place):
                        loss = net(**batch).loss.float() * n / max(n_targets, 1) * weight
                    (loss * world).backward()
                step_loss += loss.detach().double()
            if world > 1:  # the step's loss over all processes, for the bar and the history
                dist.all_reduce(step_loss)
            step_loss = step_loss.item()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            history.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
            if step >= total_steps:
                break
    bar.close()
    if place.device == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if world > 1:
        summed = torch.tensor([float(tokens)], dtype=torch.float64, device=device)
        dist.all_reduce(summed)
        tokens = int(summed.item())
    history = [round(h, 5) for h in history]
    val_after = mean_loss(model, val_ex, tok.pad_token_id, cfg.batch_size, place, device, rank, world)
    if rank == 0:
        with atomic_dir(output) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    if world > 1:  # every process waits for the save, then all leave together
        dist.barrier()
    if rank != 0:
        return {}
    parameters = sum(p.numel() for p in model.parameters())
    tok_s = tokens / seconds if seconds else None
    metrics = {
        "architecture": "encoder-decoder" if enc_dec else "decoder",
        "parameters": parameters,
        "train_rows": len(train_ex),
        "steps": step,
        "train_loss": history,
        "grad_norm": [round(g, 5) for g in norms],  # before clipping to 1.0
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "device": place.device if place.device == "cpu" else torch.cuda.get_device_name(device),
        "processes": world,
        "precision": place.precision,
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_second": round(tok_s, 1) if tok_s else None,
        # model FLOPs as in the plan (6·N per token, 3·N for encoder-decoders), per process
        "model_tflops_per_second": (round(training_flops(parameters, tok_s, enc_dec) / 1e12 / world, 4)
                                    if tok_s else None),
        "mfu": None,
    }
    peak = gpu_peak_tflops(metrics["device"]) if place.device == "cuda" and place.precision == "bf16" else None
    if peak and metrics["model_tflops_per_second"]:
        metrics["mfu"] = round(metrics["model_tflops_per_second"] / peak, 4)
    log.info("trained %s on %s x%d (%s): %d steps, loss %.3f -> %.3f, val %.3f -> %.3f, %.0fs, "
             "%.0f tok/s, %.3g model TFLOP/s per process, MFU %s",
             output, metrics["device"], world, place.precision, step, history[0], history[-1],
             val_before or float("nan"), val_after or float("nan"), seconds, tok_s or 0,
             metrics["model_tflops_per_second"] or 0, metrics["mfu"])
    return metrics
