"""Micro-batches for training: padded, length-grouped, or packed.

- padded: rows in the shuffled order, `batch_size` a batch, padded to the longest.
- grouped: the shuffled order is cut into windows of GROUP_WINDOW batches; inside a window
  rows are sorted by length before they are cut into batches, and the batches are then
  shuffled, so a batch holds rows of similar length and little padding.
- packed (decoder-only): the same batches as `padded`, each flattened into one row with
  position ids restarting at 0 for every example and no attention mask; transformers then
  builds a block-diagonal causal mask (masking_utils.find_packed_sequence_indices), so no
  token attends across examples and there is no padding at all. The model must run with
  use_cache=False (with a cache, transformers does not look for packed positions). The first
  label of every example is ignored: unpacked it is never predicted either (labels shift by
  one), packed it would be predicted from the previous example's last token. Each optimizer
  step sees the same examples and the same token-weighted loss as `padded`.

Encoder-decoder students (T5) take `grouped` when asked for `packed`: T5's relative position
bias is computed from positions inside the attention layer, which cannot restart per example.
"""

from __future__ import annotations

import torch

IGNORE = -100
MODES = ("padded", "grouped", "packed")
GROUP_WINDOW = 64  # batches sorted by length together; a larger window pads less, shuffles less


def epoch_batches(order: list[int], lengths: list[int], batch_size: int, mode: str,
                  gen: torch.Generator) -> list[list[int]]:
    """The epoch's micro-batches (lists of example indices) from its shuffled `order`.

    `gen` is the epoch's data-order generator: grouped batches are shuffled with it, so the
    plan is a function of the generator's state (what a checkpoint stores)."""
    if mode not in MODES:
        raise ValueError(f"batching is {mode!r}; expected one of {', '.join(MODES)}")
    if mode != "grouped":
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * GROUP_WINDOW
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda k: lengths[k])  # stable: ties keep the order
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[p] for p in torch.randperm(len(batches), generator=gen).tolist()]


def collate(batch: list[dict], pad_id: int) -> dict:
    """Rows padded to the longest (right padding), labels padded with IGNORE."""
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


def collate_packed(batch: list[dict]) -> dict:
    """Decoder examples (input_ids and labels of equal length) flattened into one row."""
    ids, labels, positions = [], [], []
    for b in batch:
        if len(b["input_ids"]) != len(b["labels"]):
            raise ValueError("packing needs labels aligned with input_ids (decoder-only examples)")
        ids += b["input_ids"]
        labels += [IGNORE] + b["labels"][1:]
        positions += range(len(b["input_ids"]))

    def as_row(xs: list[int]) -> torch.Tensor:
        return torch.tensor([xs], dtype=torch.long)

    return {"input_ids": as_row(ids), "position_ids": as_row(positions), "labels": as_row(labels)}


def make_batch(batch: list[dict], pad_id: int, packed: bool) -> dict:
    return collate_packed(batch) if packed else collate(batch, pad_id)


def input_tokens(batch: dict) -> int:
    """Non-padding input tokens of a collated batch."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return batch["input_ids"].numel()


def useful_tokens(batch: dict) -> int:
    """Tokens the loss is taken on (response tokens)."""
    return int((batch["labels"] != IGNORE).sum())


@torch.no_grad()
def packing_error(model, examples: list[dict], device="cpu") -> float:
    """Largest |logit| difference between `examples` run packed into one row and run one by one.

    Near 0 (float rounding) when the architecture keeps attention inside each packed example;
    large when it does not (it attends across examples or ignores the position ids)."""
    was_training = model.training
    model.eval()
    packed = collate_packed(examples)
    logits = model(input_ids=packed["input_ids"].to(device), position_ids=packed["position_ids"].to(device),
                   use_cache=False).logits[0]
    worst, start = 0.0, 0
    for ex in examples:
        n = len(ex["input_ids"])
        alone = model(input_ids=torch.tensor([ex["input_ids"]], device=device)).logits[0]
        worst = max(worst, float((logits[start : start + n] - alone).abs().max()))
        start += n
    model.train(was_training)
    return worst
