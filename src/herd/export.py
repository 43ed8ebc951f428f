"""Export a fine-tuned student to ONNX (fp32) and dynamic int8, with a parity report.

`export_student` turns a Hugging Face checkpoint directory into two directories
that optimum's `ORTModelForCausalLM` / `ORTModelForSeq2SeqLM.from_pretrained`
load (with the tokenizer files beside the graphs), and a JSON report comparing
their logits against PyTorch on a few fixed prompts. Both directories are
written beside their final path and renamed into place only after the fp32
parity check passes, so an existing output directory is always a complete,
checked export.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from herd import native
from herd.io import atomic_dir, dir_size_mb, write_json

log = logging.getLogger(__name__)

DECODER_TASK = "text-generation-with-past"
SEQ2SEQ_TASK = "text2text-generation-with-past"

# Fixed inputs of the parity check. For encoder-decoder models the prompt goes
# to the encoder and the decoder reads its start token followed by DECODER_TEXT.
PARITY_PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Write a short poem about the sea.",
    "What is the capital of France?",
)
DECODER_TEXT = "The answer is"

# optimum loads decoder_model_merged.onnx when it exists; the separate
# decoder pair it was merged from is then dead weight (about 2x the decoder).
MERGED_DECODER = "decoder_model_merged.onnx"
UNMERGED_DECODERS = ("decoder_model.onnx", "decoder_with_past_model.onnx")

# Any file whose name contains this is a graph or its external weights
# (model.onnx, model.onnx_data, model.onnx.data); everything else is metadata.
ONNX_MARK = ".onnx"


class ParityError(RuntimeError):
    """The ONNX fp32 export does not reproduce the PyTorch logits."""


def export_student(
    model_dir: Path,
    onnx_dir: Path,
    int8_dir: Path,
    parity_path: Path,
    tolerance: float = 1e-3,
) -> dict:
    """Export `model_dir` to ONNX fp32 (`onnx_dir`) and int8 (`int8_dir`); report parity.

    Writes `parity_path` (JSON) and returns the same dict. Raises ParityError,
    after writing the report, when the fp32 logits differ from PyTorch by more
    than `tolerance`; neither output directory is then created or replaced.
    """
    model_dir, parity_path = Path(model_dir), Path(parity_path)
    start = time.monotonic()
    seq2seq = _is_encoder_decoder(model_dir)
    with atomic_dir(onnx_dir) as onnx_tmp, atomic_dir(int8_dir) as int8_tmp:
        export_onnx(model_dir, onnx_tmp, seq2seq)
        quantize_dir(onnx_tmp, int8_tmp)
        report = measure_parity(model_dir, onnx_tmp, int8_tmp, seq2seq, tolerance)
        report["seconds"] = round(time.monotonic() - start, 1)
        write_json(parity_path, report)
        if not report["fp32"]["passed"]:
            raise ParityError(
                f"ONNX export of {model_dir} differs from PyTorch: max |logit diff| "
                f"{report['fp32']['max_abs_diff']:.3g} > tolerance {tolerance:g} (see {parity_path})"
            )
    sizes = report["size_mb"]
    log.info(
        "exported %s in %.0f s: %.1f MB pytorch, %.1f MB onnx, %.1f MB int8; "
        "max |diff| fp32 %.2g, int8 %.2g, int8 top-1 agreement %.3f",
        model_dir, report["seconds"], sizes["pytorch"], sizes["onnx"], sizes["int8"],
        report["fp32"]["max_abs_diff"], report["int8"]["max_abs_diff"], report["int8"]["top1_agreement"],
    )
    return report


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


def quantize_dir(onnx_dir: Path, int8_dir: Path) -> None:
    """Dynamic int8 (QInt8 weights) copy of every graph in `onnx_dir`, plus its metadata files.

    A graph whose weights are external data (models over 2 GB) keeps them
    external in the int8 copy, as `<name>.onnx.data`.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.onnx.utils import check_model_uses_external_data

    int8_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(onnx_dir.iterdir()):
        if path.is_file() and ONNX_MARK not in path.name:
            shutil.copy2(path, int8_dir / path.name)
    for graph in sorted(onnx_dir.glob("*.onnx")):
        with _quiet_root_logger():
            quantize_dynamic(
                graph,
                int8_dir / graph.name,
                weight_type=QuantType.QInt8,
                use_external_data_format=check_model_uses_external_data(graph),
                # merged decoders keep both branches inside an If node
                extra_options={"EnableSubgraph": True},
            )


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs one root-logger line per tensor; hide them."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def measure_parity(model_dir: Path, onnx_dir: Path, int8_dir: Path, seq2seq: bool, tolerance: float) -> dict:
    """Compare the logits of PyTorch, ONNX fp32 and ONNX int8 on PARITY_PROMPTS."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    torch_cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    reference = torch_cls.from_pretrained(model_dir, dtype=torch.float32).eval()
    batches = [_parity_inputs(tokenizer, reference.config, prompt, seq2seq) for prompt in PARITY_PROMPTS]
    expected = [_logits(reference, batch) for batch in batches]
    del reference

    fp32 = _compare(expected, _ort_logits(onnx_dir, seq2seq, batches))
    native.require_onnxruntime_int8()  # a child process first: its int8 kernels may crash this host
    int8 = _compare(expected, _ort_logits(int8_dir, seq2seq, batches))
    return {
        "model": str(model_dir),
        "architecture": "encoder-decoder" if seq2seq else "decoder-only",
        "prompts": len(PARITY_PROMPTS),
        "fp32": {
            "max_abs_diff": fp32["max_abs_diff"],
            "tolerance": tolerance,
            "passed": bool(fp32["max_abs_diff"] <= tolerance),  # False for NaN too
            "top1_agreement": fp32["top1_agreement"],
        },
        "int8": int8,
        "size_mb": {
            "pytorch": dir_size_mb(model_dir),
            "onnx": dir_size_mb(onnx_dir),
            "int8": dir_size_mb(int8_dir),
        },
    }


def _parity_inputs(tokenizer, config, prompt: str, seq2seq: bool) -> dict:
    """Model inputs for one prompt (batch of one, so no padding is involved)."""
    encoded = tokenizer(prompt, return_tensors="pt")
    batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if seq2seq:
        import torch

        start = config.decoder_start_token_id
        decoder_ids = [start] + tokenizer(DECODER_TEXT, add_special_tokens=False)["input_ids"]
        batch["decoder_input_ids"] = torch.tensor([decoder_ids])
    return batch


def _ort_logits(onnx_dir: Path, seq2seq: bool, batches: list[dict]) -> list[np.ndarray]:
    """Logits of the exported model in `onnx_dir`, loaded as the evaluation will load it."""
    from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM

    ort_cls = ORTModelForSeq2SeqLM if seq2seq else ORTModelForCausalLM
    model = ort_cls.from_pretrained(onnx_dir)
    return [_logits(model, batch) for batch in batches]


def _logits(model, batch: dict) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(**batch).logits.float().numpy()


def _compare(expected: list[np.ndarray], got: list[np.ndarray]) -> dict:
    """Largest absolute logit difference and the share of positions with the same argmax."""
    diffs = [float(np.max(np.abs(e - g))) for e, g in zip(expected, got)]
    same = np.concatenate([(e.argmax(-1) == g.argmax(-1)).ravel() for e, g in zip(expected, got)])
    return {"max_abs_diff": float(np.max(diffs)), "top1_agreement": round(float(same.mean()), 4)}
