"""Fine-tune a student on the distilled data, with the loss on response tokens only.

Decoder-only students see prompt + response + EOS with the prompt positions
masked (-100); encoder-decoder students read the prompt and are trained to
write the response. A short, linear AdamW loop with linear warmup and decay
(herd.train_loop; this module sets it up, saves the model and reports the metrics).

Where it runs (`Placement`): on the CPU, or on CUDA GPUs in bf16 autocast with
fp32 master weights. With more than one process the job is data parallel
(DistributedDataParallel; NCCL between GPUs, gloo between CPU processes): each
optimizer step takes `batch_size x grad_accum` rows per process, and the
gradient is the token-weighted mean over all of them, the same gradient one
process would get with `grad_accum x processes` micro-batches.

Micro-batches are padded, length-grouped or packed (herd.batching). Every
`checkpoint_every` steps the run's state is written (herd.train_state) and a rerun
with the same settings and data resumes from it.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from herd import logs, model_files, train_loop, train_state
from herd.batching import IGNORE, collate, packing_error
from herd.compute import gpu_peak_tflops, training_flops
from herd.io import atomic_dir
from herd.placement import Placement
from herd.prompts import student_prompt
from herd.train_loop import autocast

log = logging.getLogger(__name__)

# a micro-batch packs into one row with a block-diagonal mask over the whole row (sdpa/eager):
# attention cost grows with the row's square, so long rows are grouped instead
PACK_MAX_TOKENS = 4096
PACKING_TOLERANCE = 1e-3  # largest |logit| change packing may cause (fp32 rounding is ~1e-5)
ON_CPU = Placement()  # the default: one process on the CPU, fp32

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
    batching: str = "padded"  # padded | grouped | packed (herd.batching)
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0: none


def _run_settings(cfg: TrainConfig, place: Placement) -> dict:
    """What a resumed run must share with the killed one (the interval may differ)."""
    settings = asdict(cfg)
    settings.pop("checkpoint_every")
    return {**settings, "device": place.device, "processes": place.processes, "precision": place.precision}


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


def load_base(base_dir: Path):
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
    )

    cfg = AutoConfig.from_pretrained(base_dir)
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    model = cls.from_pretrained(base_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok, cfg.is_encoder_decoder


@torch.no_grad()
def mean_loss(model, examples: list[dict], pad_id: int, batch_size: int,
              place: Placement = ON_CPU, device: torch.device | str = "cpu",
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
        with autocast(place):
            sums[0] += model(**{k: v.to(device) for k, v in batch.items()}).loss.double() * n
        sums[1] += n
    if world > 1:
        dist.all_reduce(sums)
    model.train()
    return float(sums[0] / sums[1].clamp(min=1))


def train(base_dir: Path, train_rows: list[dict], val_rows: list[dict], cfg: TrainConfig,
          output: Path, place: Placement = ON_CPU, threads: int | None = None,
          log_path: str | None = None, checkpoint: Path | None = None, code_version: str = "") -> dict:
    """Fine-tune the checkpoint in `base_dir`; save to `output`; return metrics.

    With `cfg.checkpoint_every`, the run's state goes to `checkpoint` (default: a folder
    beside `output`) every so many optimizer steps, and a rerun with the same settings and
    data continues from it; it is removed once `output` is saved.

    With more than one process, spawns them (torch.multiprocessing, rendezvous on
    loopback) and they append their logging to `log_path`; the caller's main module must be
    import-safe (`if __name__ == "__main__"`)."""
    threads = threads or torch.get_num_threads()
    output = Path(output)
    ckpt = None
    if cfg.checkpoint_every:
        path = Path(checkpoint) if checkpoint else output.with_name(f"{output.name}.checkpoint")
        # the code is part of the run: after a change to the training code (which reruns the job)
        # a checkpoint of the old code is not resumed
        settings = {**_run_settings(cfg, place), "code": code_version}
        ckpt = (path, train_state.fingerprint(settings, Path(base_dir), train_rows, val_rows))
    if place.processes == 1:
        return _train(0, base_dir, train_rows, val_rows, cfg, output, place, threads, None, None, None, ckpt)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="herd-train-") as tmp:
        result = Path(tmp) / "metrics.json"
        torch.multiprocessing.spawn(
            _train, nprocs=place.processes, join=True,
            args=(base_dir, train_rows, val_rows, cfg, output, place,
                  max(1, threads // place.processes), port, result, log_path, ckpt))
        return json.loads(result.read_text())


def _train(rank: int, base_dir, train_rows, val_rows, cfg: TrainConfig, output, place: Placement,
           threads: int, port: int | None, result: Path | None, log_path: str | None,
           ckpt: tuple[Path, str] | None) -> dict:
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
        metrics = _loop(rank, world, Path(base_dir), train_rows, val_rows, cfg, Path(output), place, ckpt)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0 and result is not None:
        result.write_text(json.dumps(metrics))
    return metrics


def _choose_batching(cfg: TrainConfig, enc_dec: bool, model, train_ex: list[dict], device) -> str:
    """`cfg.batching`, or `grouped` where packing cannot keep examples apart (said in the log)."""
    if cfg.batching != "packed":
        return cfg.batching
    if enc_dec:
        log.info("batching: packed is for decoder-only students; this encoder-decoder uses grouped")
        return "grouped"
    row = cfg.batch_size * cfg.max_length
    if row > PACK_MAX_TOKENS:
        log.info("batching: a packed row of batch_size x max_length = %d tokens would need a dense %d x %d "
                 "attention mask (more than %d tokens: quadratic memory); using grouped", row, row, row,
                 PACK_MAX_TOKENS)
        return "grouped"
    probe = [{"input_ids": ex["input_ids"][:24], "labels": ex["labels"][:24]} for ex in train_ex[:3]]
    error = packing_error(model, probe, device)
    if error > PACKING_TOLERANCE:
        log.warning("batching: packed changes this architecture's logits by %.3g (it attends across "
                    "packed examples); using grouped", error)
        return "grouped"
    return "packed"


def _prepare(rank: int, base_dir: Path, train_rows, val_rows, cfg: TrainConfig, place: Placement):
    """Seed this process, load the base model onto its device and encode the rows."""
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
    # a prompt that fills max_length leaves no response token to learn from: its loss is 0/0 (NaN),
    # which would poison every weight through the gradient
    empty = sum(1 for ex in train_ex + val_ex if all(t == IGNORE for t in ex["labels"]))
    if empty:
        log.warning("%d rows have no response token within max_length %d (their prompt fills it): left out",
                    empty, cfg.max_length)
        train_ex = [ex for ex in train_ex if any(t != IGNORE for t in ex["labels"])]
        val_ex = [ex for ex in val_ex if any(t != IGNORE for t in ex["labels"])]
    if not train_ex:
        raise ValueError(f"no training rows with a response token within max_length {cfg.max_length}")
    return model, tok, enc_dec, device, train_ex, val_ex


def _loop(rank: int, world: int, base_dir: Path, train_rows, val_rows, cfg: TrainConfig,
          output: Path, place: Placement, ckpt: tuple[Path, str] | None) -> dict:
    model, tok, enc_dec, device, train_ex, val_ex = _prepare(rank, base_dir, train_rows, val_rows, cfg, place)
    batching = _choose_batching(cfg, enc_dec, model, train_ex, device)
    lengths = [len(ex["input_ids"]) + (len(ex["labels"]) if enc_dec else 0) for ex in train_ex]
    per_step = cfg.grad_accum * world  # micro-batches in one optimizer step, over all processes
    steps_per_epoch = math.ceil(len(train_ex) / (cfg.batch_size * per_step))
    total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    opt, schedule = train_loop.optimizer(model, cfg.learning_rate, cfg.weight_decay,
                                         int(total_steps * cfg.warmup_ratio), total_steps)
    gen = torch.Generator().manual_seed(cfg.seed)  # same order in every process
    resumed = train_state.load(*ckpt) if ckpt else None
    if resumed:
        progress = train_loop.resume(resumed, model, opt, schedule, gen, rank)
        log.info("resumed from step %d of %d (epoch %d, micro-batch %d) from checkpoint %s",
                 progress.step, total_steps, progress.epoch, progress.position, ckpt[0])
    else:
        progress = train_loop.Progress(
            val_before=mean_loss(model, val_ex, tok.pad_token_id, cfg.batch_size, place, device, rank, world))
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[rank] if place.device == "cuda" else None)
    model.train()
    if resumed:  # last: nothing above may draw from the generators the killed run had advanced
        train_state.set_rng_state(resumed["rng"][rank])
    trainer = train_loop.Trainer(model, net, opt, schedule, place, device, rank, world, tok.pad_token_id, enc_dec,
                                 packed=batching == "packed")
    seconds = train_loop.run(trainer, progress, gen, train_ex, lengths, batching, cfg.batch_size, per_step,
                             total_steps, ckpt, cfg.checkpoint_every)
    val_after = _finish(trainer, progress, tok, val_ex, cfg, output, ckpt)
    if rank != 0:
        return {}
    return _metrics(trainer, progress, batching, len(train_ex), seconds, val_after,
                    resumed["progress"]["step"] if resumed else None, output)


def _finish(t: train_loop.Trainer, progress: train_loop.Progress, tok, val_ex: list[dict], cfg: TrainConfig,
            output: Path, ckpt: tuple[Path, str] | None) -> float | None:
    """Sum the token counts over the processes, score the validation rows, save the model (rank
    0) and remove the checkpoint; the validation loss after training."""
    if t.world > 1:
        summed = torch.tensor([float(progress.tokens), float(progress.useful)], dtype=torch.float64, device=t.device)
        dist.all_reduce(summed)
        progress.tokens, progress.useful = int(summed[0].item()), int(summed[1].item())
    progress.history = [round(h, 5) for h in progress.history]
    val_after = mean_loss(t.model, val_ex, tok.pad_token_id, cfg.batch_size, t.place, t.device, t.rank, t.world)
    if t.rank == 0:
        # the one place the trained checkpoint is written: with the prompt format as a chat
        # template and greedy generation settings, so transformers' pipeline answers as trained
        model_files.prepare(t.model, tok, t.enc_dec, max_new_tokens=cfg.max_length)
        with atomic_dir(output) as tmp:
            t.model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        if ckpt:  # the model is saved: the checkpoint (optimizer state: 2x the weights) goes
            train_state.clear(ckpt[0])
    if t.world > 1:  # every process waits for the save, then all leave together
        dist.barrier()
    return val_after


def _metrics(t: train_loop.Trainer, progress: train_loop.Progress, batching: str, train_rows: int,
             seconds: float, val_after: float | None, resumed_from: int | None, output: Path) -> dict:
    """The run's metrics.json (rank 0), with one log line of them."""
    place, world, history = t.place, t.world, progress.history
    tokens, useful, val_before = progress.tokens, progress.useful, progress.val_before
    parameters = sum(p.numel() for p in t.model.parameters())
    tok_s = tokens / seconds if seconds else None
    metrics = {
        "architecture": "encoder-decoder" if t.enc_dec else "decoder",
        "parameters": parameters,
        "train_rows": train_rows,
        "steps": progress.step,
        "train_loss": history,
        "grad_norm": [round(g, 5) for g in progress.norms],  # before clipping to 1.0
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "device": place.device if place.device == "cpu" else torch.cuda.get_device_name(t.device),
        "processes": world,
        "precision": place.precision,
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_second": round(tok_s, 1) if tok_s else None,
        "batching": batching,
        "useful_tokens": useful,  # response tokens the loss was taken on
        "useful_tokens_per_second": round(useful / seconds, 1) if seconds else None,
        "resumed_from_step": resumed_from,
        # model FLOPs as in the plan (6·N per token, 3·N for encoder-decoders), per process
        "model_tflops_per_second": (round(training_flops(parameters, tok_s, t.enc_dec) / 1e12 / world, 4)
                                    if tok_s else None),
        "mfu": None,
    }
    peak = gpu_peak_tflops(metrics["device"]) if place.device == "cuda" and place.precision == "bf16" else None
    if peak and metrics["model_tflops_per_second"]:
        metrics["mfu"] = round(metrics["model_tflops_per_second"] / peak, 4)
    log.info("trained %s on %s x%d (%s): %d steps, loss %.3f -> %.3f, val %.3f -> %.3f, %.0fs, "
             "%.0f tok/s, %.3g model TFLOP/s per process, MFU %s",
             output, metrics["device"], world, place.precision, progress.step, history[0], history[-1],
             val_before or float("nan"), val_after or float("nan"), seconds, tok_s or 0,
             metrics["model_tflops_per_second"] or 0, metrics["mfu"])
    return metrics
