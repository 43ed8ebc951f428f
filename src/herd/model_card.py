"""Hugging Face model cards for released students (pure: data in, Markdown out).

`card` writes the README.md of one released folder (pytorch, onnx or onnx-int8):
YAML front matter the Hub reads (base_model, datasets, license, language,
pipeline_tag, library_name, tags), then how the student was trained
(metrics.json and its config), its eval rows, the export's parity numbers for
ONNX folders, the licences it inherits, and how to load it.
"""

from __future__ import annotations

import math
import re

import yaml

from herd.dataset import HUB_LICENCES, licence_slug
from herd.prompts import PROMPT_TEMPLATE

# the upstream models behind herd's packaged GGUF files (herd.assets.PACKAGED)
UPSTREAM = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "qwen2.5-coder-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
VARIANT_TITLE = {"pytorch": "PyTorch (fp32)", "onnx": "ONNX (fp32)", "onnx-int8": "ONNX (int8)"}
EVAL_COLUMNS = ("task", "metric", "value", "stderr", "n", "status")


def base_model(source: dict) -> str | None:
    """The Hub id a student's `from:` names, or None (built from scratch, a local file or folder)."""
    if "gguf" in source:
        return UPSTREAM.get(source["gguf"])
    if "hub" in source and HUB_ID.match(source["hub"]):
        return source["hub"]
    return None


def describe_base(source: dict) -> str:
    if "gguf" in source:
        upstream = UPSTREAM.get(source["gguf"])
        return f"`{source['gguf']}` (GGUF, converted to a transformers checkpoint)" + (
            f", i.e. [{upstream}](https://huggingface.co/{upstream})" if upstream else "")
    if "hub" in source:
        return f"`{source['hub']}`"
    scratch = source["scratch"]
    return (f"a {scratch['family']} model built from a config (random initial weights), "
            f"with the tokenizer of `{scratch['tokenizer']}`")


def licence_fields(licences: dict[str, int]) -> dict:
    """Front matter for the licences of the training rows: one Hub licence, or `other` naming all."""
    ids = sorted({licence_slug(n) for n in licences})
    if not ids:
        return {"license": "unknown"}
    if len(ids) == 1 and ids[0] in HUB_LICENCES:
        return {"license": ids[0]}
    return {"license": "other", "license_name": "-and-".join(ids)}


def front_matter(student_cfg: dict, variant: str, encoder_decoder: bool, dataset: str,
                 licences: dict[str, int]) -> dict:
    meta = {}
    base = base_model(student_cfg["from"])
    if base:
        meta["base_model"] = base
    meta["datasets"] = [dataset]
    meta.update(licence_fields(licences))
    meta["language"] = ["en"]
    meta["pipeline_tag"] = "text2text-generation" if encoder_decoder else "text-generation"
    meta["library_name"] = "transformers" if variant == "pytorch" else "onnx"
    tags = ["herd", "distillation", "instruction-following"]
    if variant != "pytorch":
        tags += ["onnx", "optimum", "onnxruntime"]
    if variant == "onnx-int8":
        tags.append("int8")
    meta["tags"] = tags
    return meta


def _num(value, digits: int = 4) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
        if math.isnan(value):
            return "–"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def training_section(student_cfg: dict, metrics: dict) -> list[str]:
    losses = metrics.get("train_loss") or []
    rows = [
        ("base model", describe_base(student_cfg["from"])),
        ("architecture", f"{metrics.get('architecture', '?')}, {metrics.get('parameters', 0):,} parameters"),
        ("training rows", _num(metrics.get("train_rows"))),
        ("optimizer steps", _num(metrics.get("steps"))),
        ("epochs (config)", _num(student_cfg.get("epochs"))),
        ("max steps (config)", _num(student_cfg.get("max_steps"))),
        ("learning rate", _num(student_cfg.get("learning_rate"))),
        ("batch size x gradient accumulation",
         f"{student_cfg.get('batch_size', '?')} x {student_cfg.get('grad_accum', 1)}"),
        ("max length (tokens)", _num(student_cfg.get("max_length"))),
        ("batching", metrics.get("batching", "padded")),
        ("training loss, first step -> last", f"{_num(losses[0])} -> {_num(losses[-1])}" if losses else "–"),
        ("validation loss, before -> after",
         f"{_num(metrics.get('val_loss_before'))} -> {_num(metrics.get('val_loss_after'))}"),
        ("device", f"{metrics.get('device', '?')} x{metrics.get('processes', 1)}, {metrics.get('precision', 'fp32')}"),
        ("seconds", _num(metrics.get("seconds"))),
    ]
    return ["| | |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in rows], "",
            ("The loss is taken on the response tokens only; the prompt is herd's instruction template "
             "(below), the response ends with the tokenizer's end token."), ""]


def eval_section(rows: list[dict] | None, variant: str) -> list[str]:
    if rows is None:
        return [f"This run did not evaluate the {variant} variant (it is not in `eval.variants`).", ""]
    if not rows:
        return ["The eval table has no rows for this variant.", ""]
    lines = ["| " + " | ".join(EVAL_COLUMNS) + " |", "|" + "---|" * len(EVAL_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(_num(r.get(c)) if c in ("value", "stderr", "n") else r.get(c, ""))
                                       for c in EVAL_COLUMNS) + " |")
    sources = sorted({str(r["source"]) for r in rows if r.get("source")})
    prompts = sorted({str(r["prompt"]) for r in rows if r.get("prompt")})
    notes = []
    if sources:
        notes.append("Data: " + "; ".join(sources) + ".")
    if prompts:
        notes.append("Benchmark contexts: " + ", ".join(prompts) + " (`eval.instruction_template`).")
    return [*lines, "", "Zero-shot, scored by lm-evaluation-harness on the items herd's eval stage chose; "
            "rouge rows compare greedy answers with the teacher's held-out responses. " + " ".join(notes), ""]


def parity_section(parity: dict | None, variant: str) -> list[str]:
    if not parity or variant == "pytorch":
        return []
    lines = ["## Export", ""]
    fp32 = parity.get("fp32", {})
    sizes = parity.get("size_mb", {})
    if variant == "onnx":
        lines.append(f"ONNX fp32 against PyTorch on fixed prompts: max |logit difference| "
                     f"{_num(fp32.get('max_abs_diff'))} (tolerance {_num(fp32.get('tolerance'))}), greedy "
                     f"generation identical on {_num(fp32.get('generation_match'))} of the prompts.")
        size = sizes.get("onnx")
    else:
        int8 = parity.get("int8", {})
        lines.append(f"int8 against PyTorch on fixed prompts: top-1 token agreement "
                     f"{_num(int8.get('top1_agreement'))}, max |logit difference| {_num(int8.get('max_abs_diff'))}"
                     + (f", first greedy tokens identical on {_num(int8.get('generation_match'))} of the prompts"
                        if "generation_match" in int8 else "") + ".")
        if parity.get("chosen"):
            lines.append(f"Quantization: `{parity['chosen']}` (the first flavour of `export.int8.flavours` "
                         "that passed the gate, or the best one when none did).")
        gate = parity.get("gate")
        if isinstance(gate, dict):
            verdict = "passed" if gate.get("passed") else "FAILED: " + "; ".join(gate.get("reasons") or [])
            lines.append(f"Export gate (`export.int8.gate`, parity on fixed prompts): {verdict}. The benchmark "
                         "half of the gate is the `gate` column of the run's `results/eval.csv`.")
        size = sizes.get("int8")
    if size is not None and sizes.get("pytorch"):
        lines.append(f"Size: {_num(size)} MB ({size / sizes['pytorch']:.2f}x the PyTorch checkpoint's "
                     f"{_num(sizes['pytorch'])} MB).")
    return [*lines, ""]


def licence_section(licences: dict[str, int], teacher: dict, student_cfg: dict) -> list[str]:
    named = ", ".join(f"{k} ({v} rows)" for k, v in sorted(licences.items())) or "none recorded"
    lines = [f"Training rows: {named} (the dataset card, results/dataset/README.md, traces each row to "
             "its seed file). The responses were written by the teacher "
             f"`{teacher.get('model', '?')}`" + (f" ({teacher['licence']})" if teacher.get("licence") else "")
             + ", whose terms of use apply to generated text."]
    base = base_model(student_cfg["from"])
    if base:
        lines.append(f"The weights started from `{base}`, under its own licence.")
    return [" ".join(lines), ""]


def usage_section(variant: str, encoder_decoder: bool) -> list[str]:
    msg = 'messages = [{"role": "user", "content": "Name three primary colours."}]'
    if variant == "pytorch" and not encoder_decoder:
        code = ["from transformers import pipeline", "",
                'pipe = pipeline("text-generation", model="path/to/this/folder")', msg,
                'print(pipe(messages)[0]["generated_text"][-1]["content"])']
        note = ("The chat template saved with the tokenizer renders the message in the trained "
                "format; `generation_config.json` makes decoding greedy and stop at the end token.")
    elif variant == "pytorch":
        code = ["from transformers import AutoTokenizer, pipeline", "",
                'pipe = pipeline("text2text-generation", model="path/to/this/folder")', msg,
                "prompt = pipe.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
                'print(pipe(prompt)[0]["generated_text"])']
        note = ("transformers' text2text pipeline does not apply chat templates and can only prepend a "
                "prefix, so render the prompt with the saved chat template first.")
    else:
        cls = "ORTModelForSeq2SeqLM" if encoder_decoder else "ORTModelForCausalLM"
        code = [f"from optimum.onnxruntime import {cls}", "from transformers import AutoTokenizer", "",
                'folder = "path/to/this/folder"', "tokenizer = AutoTokenizer.from_pretrained(folder)",
                f"model = {cls}.from_pretrained(folder)", msg,
                ("inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
                 'return_dict=True, return_tensors="pt")'),
                "output = model.generate(**inputs)  # greedy, from generation_config.json"]
        code.append("print(tokenizer.decode(output[0], skip_special_tokens=True))" if encoder_decoder else
                    'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))')
        note = "Needs `optimum[onnxruntime]`; runs on the CPU with onnxruntime."
    return ["```python", *code, "```", "", note, "", "The prompt format (herd.prompts.PROMPT_TEMPLATE):", "",
            "```", PROMPT_TEMPLATE.rstrip("\n"), "```", ""]


def card(student: str, variant: str, student_cfg: dict, metrics: dict, eval_rows: list[dict] | None,
         parity: dict | None, dataset: str, licences: dict[str, int], teacher: dict) -> str:
    """The README.md of results/models/<student>/<variant>.

    `eval_rows`: this (student, variant)'s rows of results/eval (None: not evaluated);
    `parity`: the export's parity.json (its `chosen` and `gate` keys are shown when present);
    `licences`: rows per licence of the training data (results/dataset/stats.json);
    `teacher`: {model, licence}."""
    enc_dec = metrics.get("architecture") == "encoder-decoder"
    meta = front_matter(student_cfg, variant, enc_dec, dataset, licences)
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip("\n"), "---", "",
        f"# {student}: {VARIANT_TITLE.get(variant, variant)}", "",
        (f"A small {'encoder-decoder' if enc_dec else 'decoder-only'} instruction-following model distilled "
         f"by herd in the manner of LaMini-LM: fine-tuned on instructions answered by "
         f"the teacher `{teacher.get('model', '?')}` ({dataset})."), "",
        "## Use", "", *usage_section(variant, enc_dec),
        "## Training", "", *training_section(student_cfg, metrics),
        "## Evaluation", "", *eval_section(eval_rows, variant),
        *parity_section(parity, variant),
        "## Licences", "", *licence_section(licences, teacher, student_cfg),
    ]
    return "\n".join(lines)
