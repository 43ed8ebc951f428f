"""Model cards: front matter the Hub reads, training facts, eval rows, parity, licences, loading."""
import math

import yaml

from herd import dataset, model_card

CFG = {"name": "smollm2-135m", "from": {"gguf": "smollm2-135m-instruct"}, "learning_rate": 2e-5, "epochs": 1,
       "batch_size": 4, "grad_accum": 1, "max_length": 192, "max_steps": None}
SCRATCH = {"name": "t5-mini", "from": {"scratch": {"family": "t5", "tokenizer": "smollm2-135m"}},
           "learning_rate": 5e-4, "epochs": 3, "batch_size": 8, "max_length": 256}
METRICS = {"architecture": "decoder", "parameters": 134515008, "train_rows": 120, "steps": 30,
           "train_loss": [2.5, 1.25], "val_loss_before": 2.4, "val_loss_after": 1.9, "seconds": 321.5,
           "device": "cpu", "processes": 1, "precision": "fp32", "batching": "packed"}
ROWS = [{"student": "smollm2-135m", "variant": "onnx-int8", "task": "arc_easy", "metric": "acc", "value": 0.44,
         "stderr": 0.0709, "n": 50, "status": "ok", "source": "local ARC", "prompt": "plain"},
        {"student": "smollm2-135m", "variant": "onnx-int8", "task": "piqa", "metric": "acc", "value": math.nan,
         "stderr": math.nan, "n": 0, "status": "unavailable: no file", "source": "", "prompt": "plain"}]
PARITY = {"fp32": {"max_abs_diff": 7.7e-05, "tolerance": 0.001, "generation_match": 1.0},
          "int8": {"max_abs_diff": 19.5, "top1_agreement": 0.3214, "generation_match": 0.5},
          "size_mb": {"pytorch": 541.6, "onnx": 542.8, "int8": 140.1}}
TEACHER = {"model": "qwen2.5-coder-0.5b-instruct", "licence": "Apache-2.0"}


def _split(text):
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


def test_pytorch_card_front_matter_and_body():
    meta, body = _split(model_card.card("smollm2-135m", "pytorch", CFG, METRICS, None, PARITY, "results/dataset",
                                        {"Apache-2.0": 143}, TEACHER))
    assert meta == {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "datasets": ["results/dataset"],
                    "license": "apache-2.0", "language": ["en"], "pipeline_tag": "text-generation",
                    "library_name": "transformers", "tags": ["herd", "distillation", "instruction-following"]}
    assert "| optimizer steps | 30 |" in body and "| learning rate | 2e-05 |" in body
    assert "| validation loss, before -> after | 2.4 -> 1.9 |" in body
    assert "not in `eval.variants`" in body  # no eval rows for this variant
    assert 'pipeline("text-generation"' in body and "## Export" not in body
    assert "### Response:" in body  # the prompt format is printed


def test_int8_card_shows_eval_rows_parity_and_optional_gate():
    text = model_card.card("smollm2-135m", "onnx-int8", CFG, METRICS, ROWS, PARITY, "results/dataset",
                           {"Apache-2.0": 100, "CC BY-NC 4.0": 5}, TEACHER)
    meta, body = _split(text)
    assert meta["license"] == "other" and meta["license_name"] == "apache-2.0-and-cc-by-nc-4.0"
    assert meta["library_name"] == "onnx" and "int8" in meta["tags"]
    assert "| arc_easy | acc | 0.44 | 0.0709 | 50 | ok |" in body
    assert "| piqa | acc | – | – | 0 | unavailable: no file |" in body
    assert "top-1 token agreement 0.3214" in body and "0.26x" in body
    assert "Gate" not in body and "Quantization:" not in body  # parity.json without chosen/gate
    gated = {**PARITY, "chosen": "weight_only", "gate": {"passed": False, "reasons": ["top-1 0.32 < 0.9"]}}
    body = _split(model_card.card("smollm2-135m", "onnx-int8", CFG, METRICS, ROWS, gated, "d", {}, TEACHER))[1]
    assert "`weight_only`" in body and "FAILED: top-1 0.32 < 0.9" in body
    assert "ORTModelForCausalLM" in body and "apply_chat_template" in body


def test_scratch_encoder_decoder_card():
    metrics = {**METRICS, "architecture": "encoder-decoder"}
    meta, body = _split(model_card.card("t5-mini", "pytorch", SCRATCH, metrics, [], None, "d", {}, TEACHER))
    assert "base_model" not in meta and meta["license"] == "unknown"
    assert meta["pipeline_tag"] == "text2text-generation"
    assert "random initial weights" in body and 'pipeline("text2text-generation"' in body
    assert "apply_chat_template(messages, tokenize=False" in body


def test_base_model_names_only_hub_ids():
    assert model_card.base_model({"hub": "google/flan-t5-small"}) == "google/flan-t5-small"
    assert model_card.base_model({"hub": "/models/local"}) is None
    assert model_card.base_model({"gguf": "/x/model.gguf"}) is None
    assert dataset.licence_slug("CC BY-NC 4.0") == "cc-by-nc-4.0"
