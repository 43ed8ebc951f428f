"""Answers of every (student, variant) to a fixed set of prompts, for people to read.

`read_prompts` reads the prompt file (`samples.prompts`: text, one instruction a
line, or JSONL with an `instruction` field); `answer_all` answers them greedily,
one at a time, with a model loaded as the eval stage loads it
(herd.evaluation.load_variant: ONNX int8 behind the native-code guard);
`table` puts every answer to a prompt side by side in Markdown.

Prompts are herd's instruction template tokenised as in training (no added
special tokens): what a user gets from the saved chat template.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from herd.lm_adapter import is_encoder_decoder, model_device
from herd.prompts import student_prompt
from herd.sources import jsonl_records

log = logging.getLogger(__name__)


def read_prompts(path: Path) -> list[str]:
    """Instructions from `path`: .jsonl rows with an `instruction` (and optional `input`, appended
    on a new line), or a text file with one per line ('#' lines and blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples.prompts: file {path} not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = []
    if path.suffix == ".jsonl":
        for where, row in jsonl_records("\n".join(lines), path, "samples.prompts", "jsonl"):
            if not str(row.get("instruction", "")).strip():
                raise ValueError(f"{where}: has no `instruction`")
            text = row["instruction"].strip()
            if str(row.get("input", "")).strip():
                text += "\n" + row["input"].strip()
            prompts.append(text)
    else:
        prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"samples.prompts: {path} holds no prompt")
    return prompts


def answer(model, tokenizer, instruction: str, max_new_tokens: int) -> dict:
    """One greedy answer: {answer, tokens, finish_reason ("stop": the end token; "length":
    max_new_tokens reached), seconds}."""
    seq2seq = is_encoder_decoder(model)
    enc = tokenizer(student_prompt(instruction), return_tensors="pt", add_special_tokens=False)
    enc = {k: v.to(model_device(model)) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                             pad_token_id=pad, eos_token_id=eos)
    seconds = time.perf_counter() - started
    # an encoder-decoder's output starts with the decoder start token; a decoder's with the prompt
    new = out[0, 1:].tolist() if seq2seq else out[0, enc["input_ids"].shape[1]:].tolist()
    stopped = eos in new
    new = new[: new.index(eos)] if stopped else new
    return {"answer": tokenizer.decode(new, skip_special_tokens=True).strip(), "tokens": len(new),
            "finish_reason": "stop" if stopped else "length", "seconds": round(seconds, 3)}


def answer_all(variant: str, model_path: Path, instructions: list[str], max_new_tokens: int,
               threads: int = 2) -> list[dict]:
    """Load one variant (herd.evaluation.load_variant) and answer every instruction."""
    from tqdm import tqdm

    from herd.evaluation import load_variant

    model, tokenizer = load_variant(variant, Path(model_path), threads=threads)
    rows = []
    for i, instruction in enumerate(tqdm(instructions, desc="samples", unit="prompt")):
        rows.append({"prompt": i, "instruction": instruction,
                     **answer(model, tokenizer, instruction, max_new_tokens)})
    total = sum(r["tokens"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    log.info("%s from %s: %d answers, %d tokens in %.1f s (%.1f tokens/s)", variant, model_path, len(rows),
             total, seconds, total / seconds if seconds else 0.0)
    return rows


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in (text or "(empty answer)").splitlines())


def table(answers: dict[tuple[str, str], list[dict]], max_new_tokens: int) -> str:
    """Markdown: for every prompt, each (student, variant)'s answer, in the order given."""
    keys = list(answers)
    prompts = {r["prompt"]: r["instruction"] for rows in answers.values() for r in rows}
    lines = ["# Sample answers", "",
             (f"Greedy answers of every student variant to the same {len(prompts)} prompts "
              f"(`samples.prompts`), at most {max_new_tokens} new tokens (`samples.max_new_tokens`). "
              "`stop`: the model ended its answer; `length`: it was cut at the limit."), ""]
    for index in sorted(prompts):
        first, *rest = prompts[index].strip().splitlines() or [""]  # a heading holds one line
        lines += [f"## {index + 1}. {first}", "", *([_quote("\n".join(rest)), ""] if rest else [])]
        for student, variant in keys:
            row = next((r for r in answers[(student, variant)] if r["prompt"] == index), None)
            if row is None:
                continue
            head = (f"**{student} / {variant}** ({row['tokens']} tokens, {row['finish_reason']}, "
                    f"{row['seconds']:.2f} s)")
            lines += [head, "", _quote(row["answer"]), ""]
    return "\n".join(lines)
