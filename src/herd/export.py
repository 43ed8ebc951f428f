"""Export a fine-tuned student to ONNX (fp32) and int8, with a parity report.

`export_student` turns a Hugging Face checkpoint directory into two directories
that optimum's `ORTModelForCausalLM` / `ORTModelForSeq2SeqLM.from_pretrained`
load (with the tokenizer files beside the graphs), and a JSON report comparing
them against PyTorch on a few fixed prompts: logits, and greedy generation
through the exported decoder and its KV cache. The int8 directory holds the
first quantization flavour (herd.quantize) that passes the gate
(`export.int8.gate`). Both directories are written beside their final path and
renamed into place only after the checks pass, so an existing output directory
is always a complete, checked export.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from herd import native, quantize
from herd.io import atomic_dir, dir_size_mb, write_json
from herd.prompts import student_prompt

log = logging.getLogger(__name__)

DECODER_TASK = "text-generation-with-past"
SEQ2SEQ_TASK = "text2text-generation-with-past"

# Fixed inputs of the logits check. For encoder-decoder models the prompt goes
# to the encoder and the decoder reads its start token followed by DECODER_TEXT.
PARITY_PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Write a short poem about the sea.",
    "What is the capital of France?",
)
DECODER_TEXT = "The answer is"
# Greedy generation check: in the students' own prompt format (herd.prompts).
GENERATION_INSTRUCTIONS = (
    "Name three colours of the rainbow.",
    "Explain what a CPU does in one sentence.",
    "Write a haiku about autumn.",
    "What is 12 times 7?",
    "Give two tips for staying focused while studying.",
    "Translate 'good morning' into French.",
    "Describe a cat to someone who has never seen one.",
    "List the planets closest to the sun.",
)

# optimum loads decoder_model_merged.onnx when it exists; the separate
# decoder pair it was merged from is then dead weight (about 2x the decoder).
MERGED_DECODER = "decoder_model_merged.onnx"
UNMERGED_DECODERS = ("decoder_model.onnx", "decoder_with_past_model.onnx")

DEFAULT_INT8 = {
    "flavours": ["dynamic"], "block_size": 32, "accuracy_level": quantize.ACCURACY_LEVEL, "keep_fp32": [], "on_fail": "report",
    "gate": {"min_top1": 0.0, "generation_tokens": 8, "min_generation_match": 0.0, "max_benchmark_drop": None},
}


class ParityError(RuntimeError):
    """The ONNX fp32 export does not reproduce PyTorch (logits or greedy generation)."""


class Int8GateError(RuntimeError):
    """No int8 flavour passed `export.int8.gate` (with `export.int8.on_fail: error`)."""


def export_student(model_dir: Path, onnx_dir: Path, int8_dir: Path, parity_path: Path,
                   tolerance: float = 1e-3, int8: dict | None = None) -> dict:
    """Export `model_dir` to ONNX fp32 (`onnx_dir`) and int8 (`int8_dir`); report parity.

    Writes `parity_path` (JSON) and returns the same dict. Raises ParityError, after
    writing the report, when the fp32 export differs from PyTorch (logits by more than
    `tolerance`, or any greedy token); Int8GateError when no flavour of `int8` (the
    `export.int8` config) passes its gate and on_fail is `error`. Neither output
    directory is then created or replaced.
    """
    cfg = {**DEFAULT_INT8, **(int8 or {})}
    gate = {**DEFAULT_INT8["gate"], **cfg["gate"]}
    model_dir, parity_path = Path(model_dir), Path(parity_path)
    start = time.monotonic()
    seq2seq = _is_encoder_decoder(model_dir)
    with atomic_dir(onnx_dir) as onnx_tmp, atomic_dir(int8_dir) as int8_tmp:
        export_onnx(model_dir, onnx_tmp, seq2seq)
        reference = Reference(model_dir, seq2seq, gate["generation_tokens"])
        fp32 = reference.compare(onnx_tmp)
        report = {
            "model": str(model_dir), "architecture": "encoder-decoder" if seq2seq else "decoder-only",
            "prompts": len(PARITY_PROMPTS), "generation_prompts": len(GENERATION_INSTRUCTIONS),
            "fp32": {**fp32, "tolerance": tolerance,
                     "passed": bool(fp32["max_abs_diff"] <= tolerance and fp32["generation_match"] == 1.0)},
            "size_mb": {"pytorch": dir_size_mb(model_dir), "onnx": dir_size_mb(onnx_tmp)},
        }
        if not report["fp32"]["passed"]:
            report["seconds"] = round(time.monotonic() - start, 1)
            write_json(parity_path, report)
            raise ParityError(
                f"ONNX export of {model_dir} differs from PyTorch: max |logit diff| {fp32['max_abs_diff']:.3g} "
                f"(export.tolerance {tolerance:g}); greedy generation of {gate['generation_tokens']} tokens "
                f"matches on {fp32['generation_match']:.0%} of {len(GENERATION_INSTRUCTIONS)} prompts "
                f"(must be all; see {parity_path})")
        native.require_onnxruntime_int8()  # a child process first: its int8 kernels may crash this host
        report.update(choose_int8(reference, onnx_tmp, int8_tmp, cfg, gate))
        report["size_mb"]["int8"] = dir_size_mb(int8_tmp)
        report["seconds"] = round(time.monotonic() - start, 1)
        write_json(parity_path, report)
        if not report["gate"]["passed"] and cfg["on_fail"] == "error":
            raise Int8GateError(f"int8 export of {model_dir}: no flavour passed export.int8.gate: "
                                + "; ".join(report["gate"]["reasons"])
                                + f" (see {parity_path}; export.int8.on_fail: report ships the best one)")
    log.info("exported %s in %.0f s: %.1f MB pytorch, %.1f MB onnx, %.1f MB int8 (%s); int8 top-1 %.3f, "
             "generation match %.2f, gate %s", model_dir, report["seconds"], report["size_mb"]["pytorch"],
             report["size_mb"]["onnx"], report["size_mb"]["int8"], report["chosen"],
             report["int8"]["top1_agreement"], report["int8"]["generation_match"],
             "passed" if report["gate"]["passed"] else "FAILED")
    return report


def choose_int8(reference: Reference, onnx_dir: Path, int8_dir: Path, cfg: dict, gate: dict) -> dict:
    """Quantize `onnx_dir` flavour by flavour until one passes `gate`; move it (or the best) to `int8_dir`."""
    flavours, best, tried = {}, None, []
    try:
        for flavour in cfg["flavours"]:
            candidate = int8_dir.parent / f"{int8_dir.name}.{flavour}"
            tried.append(candidate)
            started = time.monotonic()
            quantize.quantize_dir(onnx_dir, candidate, flavour, cfg["block_size"], cfg["keep_fp32"],
                                  cfg["accuracy_level"])
            result = reference.compare(candidate)
            reasons = gate_reasons(result, gate)
            flavours[flavour] = {**result, "size_mb": dir_size_mb(candidate), "passed": not reasons,
                                 "reasons": reasons, "seconds": round(time.monotonic() - started, 1)}
            log.info("int8 flavour %s: %s", flavour, "; ".join(reasons) or "passed the gate")
            rank = (not reasons, result["generation_match"], result["top1_agreement"])
            if best is None or rank > best[0]:
                best = (rank, flavour, candidate)
            if not reasons:
                break
        _, chosen, path = best
        shutil.rmtree(int8_dir)
        path.rename(int8_dir)
    finally:  # the candidates are whole model copies: none stays behind, on success or error
        for candidate in tried:
            shutil.rmtree(candidate, ignore_errors=True)
    passed = flavours[chosen]["passed"]
    reasons = [] if passed else [f"{name}: {'; '.join(f['reasons'])}" for name, f in flavours.items()]
    return {"int8": {**{k: flavours[chosen][k] for k in ("max_abs_diff", "top1_agreement", "generation_match",
                                                        "passed")}, "flavour": chosen},
            "flavours": flavours, "chosen": chosen,
            "gate": {"passed": passed, "reasons": reasons, "max_benchmark_drop": gate.get("max_benchmark_drop")}}


def gate_reasons(result: dict, gate: dict) -> list[str]:
    """Why `result` fails `gate` (export.int8.gate), naming the numbers and keys; empty when it passes."""
    reasons = []
    if not result["top1_agreement"] >= gate["min_top1"]:  # NaN fails too
        reasons.append(f"top-1 agreement {result['top1_agreement']:.3f} < export.int8.gate.min_top1 "
                       f"{gate['min_top1']:g}")
    if not result["generation_match"] >= gate["min_generation_match"]:
        reasons.append(f"first {gate['generation_tokens']} greedy tokens match PyTorch on "
                       f"{result['generation_match']:.2f} of prompts < export.int8.gate.min_generation_match "
                       f"{gate['min_generation_match']:g}")
    return reasons


def _is_encoder_decoder(model_dir: Path) -> bool:
    """Read the checkpoint's config; a missing or broken checkpoint fails here, early."""
    from transformers import AutoConfig

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face checkpoint (no config.json)")
    return bool(AutoConfig.from_pretrained(model_dir).is_encoder_decoder)


def export_onnx(model_dir: Path, output: Path, seq2seq: bool) -> None:
    """Export the checkpoint with its KV cache into `output`, tokenizer files included."""
    from optimum.exporters.onnx import main_export

    main_export(
        str(model_dir),
        output=output,
        task=SEQ2SEQ_TASK if seq2seq else DECODER_TASK,
        dtype="fp32",
        do_validation=False,  # measure_parity does a stricter check
    )
    if (output / MERGED_DECODER).is_file():
        for name in UNMERGED_DECODERS:
            for path in output.glob(f"{name}*"):  # the graph and any external data
                path.unlink()


class Reference:
    """PyTorch's logits and greedy tokens on the fixed prompts, to compare exports with."""

    def __init__(self, model_dir: Path, seq2seq: bool, generation_tokens: int):
        import torch
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        self.seq2seq, self.tokens = seq2seq, generation_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        torch_cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        model = torch_cls.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.batches = [_parity_inputs(self.tokenizer, model.config, p, seq2seq) for p in PARITY_PROMPTS]
        self.prompts = [_encode(self.tokenizer, student_prompt(i)) for i in GENERATION_INSTRUCTIONS]
        self.logits = [_logits(model, batch) for batch in self.batches]
        self.generated = [greedy(model, p, generation_tokens, seq2seq) for p in self.prompts]

    def load(self, onnx_dir: Path):
        """The exported model in `onnx_dir`, loaded as the evaluation loads it."""
        from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM

        return (ORTModelForSeq2SeqLM if self.seq2seq else ORTModelForCausalLM).from_pretrained(onnx_dir)

    def compare(self, onnx_dir: Path) -> dict:
        """max_abs_diff and top1_agreement of the logits; generation_match: the share of prompts whose
        greedy tokens (through the KV cache) equal PyTorch's."""
        model = self.load(onnx_dir)
        result = _compare(self.logits, [_logits(model, batch) for batch in self.batches])
        same = [greedy(model, p, self.tokens, self.seq2seq) == want for p, want in zip(self.prompts, self.generated)]
        return {**result, "generation_match": round(float(np.mean(same)), 4)}


def _encode(tokenizer, text: str) -> dict:
    encoded = tokenizer(text, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def greedy(model, inputs: dict, tokens: int, seq2seq: bool) -> list[int]:
    """Exactly `tokens` greedy tokens (end of text suppressed until then), batch of one, KV cache on."""
    import torch

    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             num_beams=1, use_cache=True, pad_token_id=model.config.eos_token_id)
    # encoder-decoders return the decoder start token first; decoders return the prompt first
    return out[0, 1:].tolist() if seq2seq else out[0, inputs["input_ids"].shape[1]:].tolist()


def _parity_inputs(tokenizer, config, prompt: str, seq2seq: bool) -> dict:
    """Model inputs for one prompt (batch of one, so no padding is involved)."""
    batch = _encode(tokenizer, prompt)
    if seq2seq:
        import torch

        start = config.decoder_start_token_id
        decoder_ids = [start] + tokenizer(DECODER_TEXT, add_special_tokens=False)["input_ids"]
        batch["decoder_input_ids"] = torch.tensor([decoder_ids])
    return batch


def _logits(model, batch: dict) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(**batch).logits.float().numpy()


def _compare(expected: list[np.ndarray], got: list[np.ndarray]) -> dict:
    """Largest absolute logit difference and the share of positions with the same argmax."""
    diffs = [float(np.max(np.abs(e - g))) for e, g in zip(expected, got)]
    same = np.concatenate([(e.argmax(-1) == g.argmax(-1)).ravel() for e, g in zip(expected, got)])
    return {"max_abs_diff": float(np.max(diffs)), "top1_agreement": round(float(same.mean()), 4)}
