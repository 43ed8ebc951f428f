"""ONNX fp32 / int8 export of tiny scratch students (GPT-2 and T5 architectures)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from herd import assets, export
from herd.io import read_json

TINY_ARCH = {
    "gpt2": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64},
    "t5": {"num_layers": 2, "d_model": 32, "d_ff": 64, "num_heads": 2, "d_kv": 16},
}
PROMPT = "Name three colours of the rainbow."


def _scratch(family, tokenizer_dir, root):
    model_dir = root / f"{family}-tiny"
    assets.build_scratch(family, TINY_ARCH[family], str(tokenizer_dir), model_dir, seed=0)
    return model_dir


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def exported(request, tokenizer_dir, tmp_path_factory):
    """A tiny scratch model of each family, exported once."""
    root = tmp_path_factory.mktemp(request.param)
    model_dir = _scratch(request.param, tokenizer_dir, root)
    out = root / "out"
    report = export.export_student(model_dir, out / "onnx", out / "int8", out / "parity.json")
    return request.param, model_dir, out, report


def _torch_and_ort(family):
    from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    if family == "t5":
        return AutoModelForSeq2SeqLM, ORTModelForSeq2SeqLM
    return AutoModelForCausalLM, ORTModelForCausalLM


def _logits(model, tokenizer, family):
    import torch

    inputs = dict(tokenizer(PROMPT, return_tensors="pt"))
    inputs.pop("token_type_ids", None)
    if family == "t5":
        inputs["decoder_input_ids"] = torch.tensor([[model.config.decoder_start_token_id, 5, 6]])
    with torch.no_grad():
        return model(**inputs).logits.numpy()


def test_ort_loads_both_variants_with_close_logits(exported):
    from transformers import AutoTokenizer

    family, model_dir, out, _ = exported
    torch_cls, ort_cls = _torch_and_ort(family)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    expected = _logits(torch_cls.from_pretrained(model_dir).eval(), tokenizer, family)

    fp32_tok = AutoTokenizer.from_pretrained(out / "onnx")
    assert fp32_tok(PROMPT)["input_ids"] == tokenizer(PROMPT)["input_ids"]
    fp32 = _logits(ort_cls.from_pretrained(out / "onnx"), fp32_tok, family)
    np.testing.assert_allclose(fp32, expected, atol=1e-3)

    int8_tok = AutoTokenizer.from_pretrained(out / "int8")
    int8 = _logits(ort_cls.from_pretrained(out / "int8"), int8_tok, family)
    assert int8.shape == expected.shape
    assert np.isfinite(int8).all()
    assert np.abs(int8 - expected).max() < 1.0


def test_int8_graphs_are_smaller(exported):
    family, _, out, _ = exported
    graphs = sorted(p.name for p in (out / "onnx").glob("*.onnx"))
    assert graphs == sorted(p.name for p in (out / "int8").glob("*.onnx"))
    expected = ["decoder_model_merged.onnx", "encoder_model.onnx"] if family == "t5" else ["model.onnx"]
    assert graphs == expected
    for name in graphs:
        assert (out / "int8" / name).stat().st_size < 0.6 * (out / "onnx" / name).stat().st_size


def test_parity_report(exported):
    family, model_dir, out, report = exported
    assert read_json(out / "parity.json") == report
    assert report["architecture"] == ("encoder-decoder" if family == "t5" else "decoder-only")
    assert report["fp32"]["passed"] is True
    assert report["fp32"]["tolerance"] == 1e-3
    assert 0 <= report["fp32"]["max_abs_diff"] <= 1e-3
    assert math.isfinite(report["int8"]["max_abs_diff"])
    assert 0.0 <= report["int8"]["top1_agreement"] <= 1.0
    sizes = report["size_mb"]
    assert set(sizes) == {"pytorch", "onnx", "int8"}
    assert all(v > 0 for v in sizes.values())
    assert sizes["int8"] < sizes["onnx"]
    assert not list(out.glob(".*"))  # no temporary directories left beside the outputs


def test_missing_checkpoint_creates_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no config.json"):
        export.export_student(tmp_path / "missing", out / "onnx", out / "int8", out / "parity.json")
    assert not out.exists()


def test_failure_mid_export_leaves_no_output(tmp_path, monkeypatch):
    from transformers import GPT2Config

    model_dir = tmp_path / "ckpt"
    GPT2Config(n_layer=1).save_pretrained(model_dir)
    out = tmp_path / "out"

    def half_export(model_dir, output, seq2seq):
        (output / "model.onnx").write_bytes(b"partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(export, "export_onnx", half_export)
    with pytest.raises(RuntimeError, match="killed"):
        export.export_student(model_dir, out / "onnx", out / "int8", out / "parity.json")
    assert list(out.iterdir()) == []


def test_parity_failure_writes_report_but_no_dirs(tmp_path, tokenizer_dir):
    model_dir = _scratch("gpt2", tokenizer_dir, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(export.ParityError, match="gpt2-tiny"):
        export.export_student(model_dir, out / "onnx", out / "int8", out / "parity.json", tolerance=-1.0)
    assert read_json(out / "parity.json")["fp32"]["passed"] is False
    assert sorted(p.name for p in out.iterdir()) == ["parity.json"]


def test_quantize_keeps_external_data_external(tmp_path, exported):
    """Models over 2 GB come as model.onnx + model.onnx_data; int8 must load the same way."""
    import onnx
    from transformers import AutoTokenizer

    family, _, out, _ = exported
    if family != "gpt2":
        pytest.skip("one architecture is enough")
    fp32 = tmp_path / "onnx"
    shutil.copytree(out / "onnx", fp32)
    graph = onnx.load(fp32 / "model.onnx")
    onnx.save_model(graph, fp32 / "model.onnx", save_as_external_data=True, location="model.onnx_data")
    assert (fp32 / "model.onnx_data").is_file()

    int8 = tmp_path / "int8"
    export.quantize_dir(fp32, int8)
    assert (int8 / "model.onnx.data").is_file()
    assert not (int8 / "model.onnx_data").exists()

    _, ort_cls = _torch_and_ort(family)
    tokenizer = AutoTokenizer.from_pretrained(int8)
    got = _logits(ort_cls.from_pretrained(int8), tokenizer, family)
    want = _logits(ort_cls.from_pretrained(out / "int8"), tokenizer, family)
    np.testing.assert_allclose(got, want, atol=1e-4)
