"""Fine-tune a student on the distilled data, with the loss on response tokens only.

Decoder-only students see prompt + response + EOS with the prompt positions
masked (-100); encoder-decoder students read the prompt and are trained to
write the response. A short, linear AdamW loop with linear warmup and decay.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

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
    model = cls.from_pretrained(base_dir, torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok, cfg.is_encoder_decoder


@torch.no_grad()
def mean_loss(model, examples: list[dict], pad_id: int, batch_size: int) -> float | None:
    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i : i + batch_size], pad_id)
        n = int((batch["labels"] != IGNORE).sum())
        total += float(model(**batch).loss) * n
        count += n
    model.train()
    return total / max(count, 1)


def train(base_dir: Path, train_rows: list[dict], val_rows: list[dict], cfg: TrainConfig,
          output: Path) -> dict:
    """Fine-tune the checkpoint in `base_dir`; save to `output`; return metrics."""
    torch.manual_seed(cfg.seed)
    model, tok, enc_dec = load_base(Path(base_dir))
    encode = encode_seq2seq if enc_dec else encode_causal
    train_ex = [encode(tok, r["instruction"], r["response"], cfg.max_length) for r in train_rows]
    val_ex = [encode(tok, r["instruction"], r["response"], cfg.max_length) for r in val_rows]
    if not train_ex:
        raise ValueError("no training rows")

    steps_per_epoch = math.ceil(len(train_ex) / (cfg.batch_size * cfg.grad_accum))
    total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    warmup = int(total_steps * cfg.warmup_ratio)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(warmup, 1), max(0.0, (total_steps - s) / max(total_steps - warmup, 1)))
    )

    gen = torch.Generator().manual_seed(cfg.seed)
    val_before = mean_loss(model, val_ex, tok.pad_token_id, cfg.batch_size)
    model.train()
    history, tokens, step = [], 0, 0
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc="train", mininterval=5, unit="step")
    while step < total_steps:
        order = torch.randperm(len(train_ex), generator=gen).tolist()
        micro = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for j in range(0, len(micro), cfg.grad_accum):
            group = micro[j : j + cfg.grad_accum]
            n_targets = sum(sum(1 for t in train_ex[k]["labels"] if t != IGNORE) for m in group for k in m)
            step_loss = 0.0
            for m in group:
                batch = collate([train_ex[k] for k in m], tok.pad_token_id)
                n = int((batch["labels"] != IGNORE).sum())
                loss = model(**batch).loss * n / max(n_targets, 1)  # token-weighted mean over the step
                loss.backward()
                step_loss += loss.item()
                tokens += int(batch["attention_mask"].sum())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            history.append(round(step_loss, 5))
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
            if step >= total_steps:
                break
    bar.close()
    seconds = time.perf_counter() - start
    val_after = mean_loss(model, val_ex, tok.pad_token_id, cfg.batch_size)

    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    metrics = {
        "architecture": "encoder-decoder" if enc_dec else "decoder",
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_rows": len(train_ex),
        "steps": step,
        "train_loss": history,
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
    }
    log.info("trained %s: %d steps, loss %.3f -> %.3f, val %.3f -> %.3f, %.0fs, %.0f tok/s",
             output, step, history[0], history[-1], val_before or float("nan"),
             val_after or float("nan"), seconds, metrics["tokens_per_second"] or 0)
    return metrics
