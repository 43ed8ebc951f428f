"""The files that make a saved student usable on its own: a chat template and a generation config.

`prepare` is called on a student just before `save_pretrained`: it sets the
tokenizer's chat template to herd's instruction prompt (herd.prompts.CHAT_TEMPLATE)
and the model's generation config to greedy decoding that stops at the end token
the student was trained to write. transformers then writes both
(`chat_template.jinja` beside the tokenizer files, `generation_config.json`), so

    pipeline("text-generation", model=folder)([{"role": "user", "content": instruction}])

renders `herd.prompts.student_prompt(instruction)` and answers in the trained
format. Encoder-decoder students: transformers' text2text pipeline never applies
a chat template and can only prepend a fixed prefix, while herd's prompt also
follows the instruction; render the prompt with `tokenizer.apply_chat_template`
and hand that string to the pipeline (the model card says so).

optimum's ONNX export (herd.export.export_onnx, main_export) re-saves the
tokenizer and the generation config it loaded, so both reach the onnx folders;
`copy_to` copies them again for an export path that does not (and `missing`
says which files a folder lacks).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from herd.prompts import CHAT_TEMPLATE

DEFAULT_MAX_NEW_TOKENS = 256
# what a folder needs for pipeline() to answer in herd's format (the template lives in
# chat_template.jinja with transformers >= 4.47, in tokenizer_config.json before)
TEMPLATE_FILE = "chat_template.jinja"
GENERATION_FILE = "generation_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def prepare(model, tokenizer, encoder_decoder: bool, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
    """Set `tokenizer.chat_template`, `model.generation_config` and the pipeline task parameters
    in place, before saving.

    Generation is greedy (one beam, no sampling), stops at the tokenizer's end token (the one
    training appended to every response) and pads with the pad token (the end token when the
    tokenizer has none). A new config replaces the base model's, whose sampling settings
    (temperature, top_p) would otherwise make greedy decoding warn or fail to save.
    """
    from transformers import GenerationConfig

    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer of {getattr(model, 'name_or_path', 'the model')} has no end token: "
                         "a student's answers could not stop")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    settings = {"do_sample": False, "num_beams": 1, "max_new_tokens": int(max_new_tokens),
                "eos_token_id": tokenizer.eos_token_id, "pad_token_id": pad}
    if model.config.bos_token_id is not None:
        settings["bos_token_id"] = model.config.bos_token_id
    if encoder_decoder:
        start = model.config.decoder_start_token_id
        settings["decoder_start_token_id"] = pad if start is None else start
    model.generation_config = GenerationConfig(**settings)
    # transformers' pipelines start from their own defaults (text-generation samples at
    # temperature 0.7, text2text uses 4 beams, both 256 new tokens), and a model's generation
    # config overrides only the values those defaults leave at the library's: the per-task
    # parameters in config.json are applied on top, so the pipeline decodes as herd does
    task = "text2text-generation" if encoder_decoder else "text-generation"
    model.config.task_specific_params = {
        **(model.config.task_specific_params or {}),
        task: {"do_sample": False, "num_beams": 1, "temperature": 1.0, "max_new_tokens": int(max_new_tokens)},
    }
    tokenizer.chat_template = CHAT_TEMPLATE


def missing(folder: Path) -> list[str]:
    """The files `prepare` gives a saved folder that `folder` lacks (empty: it has them all)."""
    folder = Path(folder)
    gone = [] if (folder / GENERATION_FILE).is_file() else [GENERATION_FILE]
    if not _has_template(folder):
        gone.append(TEMPLATE_FILE)
    return gone


def _has_template(folder: Path) -> bool:
    if (folder / TEMPLATE_FILE).is_file():
        return True
    config = folder / TOKENIZER_CONFIG
    return config.is_file() and '"chat_template"' in config.read_text(encoding="utf-8")


def copy_to(src_dir: Path, dst_dir: Path) -> list[str]:
    """Copy the chat template and generation config of a prepared checkpoint `src_dir` into an
    exported folder `dst_dir`; returns the names copied. A template kept in tokenizer_config.json
    is written out as chat_template.jinja, which transformers reads first."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    copied = []
    # every target is unlinked first: in a release folder it may be a hard link into
    # results/export, and writing through it would change the export itself
    if (src_dir / GENERATION_FILE).is_file():
        (dst_dir / GENERATION_FILE).unlink(missing_ok=True)
        shutil.copy2(src_dir / GENERATION_FILE, dst_dir / GENERATION_FILE)
        copied.append(GENERATION_FILE)
    if (src_dir / TEMPLATE_FILE).is_file():
        (dst_dir / TEMPLATE_FILE).unlink(missing_ok=True)
        shutil.copy2(src_dir / TEMPLATE_FILE, dst_dir / TEMPLATE_FILE)
        copied.append(TEMPLATE_FILE)
    elif _has_template(src_dir):
        import json

        template = json.loads((src_dir / TOKENIZER_CONFIG).read_text(encoding="utf-8"))["chat_template"]
        (dst_dir / TEMPLATE_FILE).unlink(missing_ok=True)
        (dst_dir / TEMPLATE_FILE).write_text(template, encoding="utf-8")
        copied.append(TEMPLATE_FILE)
    return copied


def link_tree(src: Path, dst: Path) -> int:
    """Copy the folder `src` to `dst` (which must not exist) as hard links: no second copy of the
    weights on disk; a file on another filesystem (or where links are refused) is copied.
    A README.md in `src` is left out: the release writes its own card. Returns files linked."""
    src, dst = Path(src), Path(dst)
    linked = 0
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if path.relative_to(src) == Path("README.md") or path.name.startswith("."):
            continue  # the release's own card; Snakemake's markers and temporary files
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.hardlink_to(path)
            linked += 1
        except OSError:  # EXDEV across filesystems, EPERM on some mounts
            shutil.copy2(path, target)
    return linked


RELEASED = ("pytorch", "onnx", "onnx-int8")  # eval variants that are folders a user can take


def release_files(student: str, eval_variants: list[str], variant_dirs: dict[str, str]) -> dict[str, str]:
    """The inputs of rule release for `student`: each released folder (the trained checkpoint, and
    the exports `eval.variants` names), the eval rows of those that were evaluated, parity.json
    when an export is released, and what the cards read (metrics, dataset stats, teacher)."""
    files = {"metrics": f"results/students/{student}/metrics.json", "stats": "results/dataset/stats.json",
             "manifest": "results/teacher_model/manifest.json"}
    for variant in released_variants(eval_variants):
        files[variant] = variant_dirs[variant].format(student=student)
        if variant in eval_variants:
            files[f"eval_{variant}"] = f"results/eval/{student}/{variant}.csv"
    if len(released_variants(eval_variants)) > 1:
        files["parity"] = f"results/export/{student}/parity.json"
    return files


def released_variants(eval_variants: list[str]) -> list[str]:
    return ["pytorch"] + [v for v in RELEASED[1:] if v in eval_variants]
