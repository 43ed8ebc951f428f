"""ONNX fp32 / int8 export of tiny scratch students (GPT-2 and T5 architectures), its flavours and gates."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from herd import assets, export, quantize
from herd.io import read_json

TINY_ARCH = {
    "gpt2": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64},
    "t5": {"num_layers": 2, "d_model": 32, "d_ff": 64, "num_heads": 2, "d_kv": 16},
}
PROMPT = "Name three colours of the rainbow."
# weight-int8 first: random tiny models pass the (lenient) gate with it, so it is the one shipped
INT8 = {"flavours": ["weight-int8", "dynamic"], "gate": {"min_top1": 0.5, "min_generation_match": 0.0}}


def _scratch(family, tokenizer_dir, root, **arch):
    model_dir = root / f"{family}-tiny"
    assets.build_scratch(family, {**TINY_ARCH[family], **arch}, str(tokenizer_dir), model_dir, seed=0)
    return model_dir


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def exported(request, tokenizer_dir, tmp_path_factory):
    """A tiny scratch model of each family, exported once."""
    root = tmp_path_factory.mktemp(request.param)
    model_dir = _scratch(request.param, tokenizer_dir, root)
    out = root / "out"
    report = export.export_student(model_dir, out / "onnx", out / "int8", out / "parity.json", int8=INT8)
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
    family, _, out, report = exported
    assert read_json(out / "parity.json") == report
    assert report["architecture"] == ("encoder-decoder" if family == "t5" else "decoder-only")
    assert report["fp32"]["passed"] is True
    assert report["fp32"]["tolerance"] == 1e-3
    assert 0 <= report["fp32"]["max_abs_diff"] <= 1e-3
    assert math.isfinite(report["int8"]["max_abs_diff"])
    assert 0.0 <= report["int8"]["top1_agreement"] <= 1.0
    assert report["fp32"]["generation_match"] == 1.0  # every greedy token through the KV cache
    assert report["chosen"] == "weight-int8"
    assert report["gate"] == {"passed": True, "reasons": [], "max_benchmark_drop": None}
    chosen = report["flavours"]["weight-int8"]
    assert set(chosen) >= {"top1_agreement", "max_abs_diff", "generation_match", "size_mb", "passed", "reasons"}
    assert chosen["passed"] is True and chosen["top1_agreement"] >= 0.5
    assert list(report["flavours"]) == ["weight-int8"]  # the first that passes ends the search
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


@pytest.mark.parametrize("flavour", ["dynamic", "dynamic-per-channel", "weight-int8"])
def test_quantize_keeps_external_data_external(tmp_path, exported, flavour):
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

    int8, inline = tmp_path / "int8", tmp_path / "inline"
    quantize.quantize_dir(fp32, int8, flavour)
    quantize.quantize_dir(out / "onnx", inline, flavour)
    assert (int8 / "model.onnx.data").is_file()
    assert not (int8 / "model.onnx_data").exists()

    _, ort_cls = _torch_and_ort(family)
    tokenizer = AutoTokenizer.from_pretrained(int8)
    got = _logits(ort_cls.from_pretrained(int8), tokenizer, family)
    want = _logits(ort_cls.from_pretrained(inline), tokenizer, family)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_weight_int8_quantizes_embedding_and_lm_head(exported, tmp_path):
    """Both the token embedding (GatherBlockQuantized) and the output layer (MatMulNBits) go to 8 bits."""
    import onnx

    family, _, out, _ = exported
    if family != "gpt2":
        pytest.skip("one architecture is enough")
    quantize.quantize_dir(out / "onnx", tmp_path / "w8", "weight-int8")
    graph = onnx.load(tmp_path / "w8" / "model.onnx").graph
    ops = {n.op_type for n in graph.node}
    assert {"GatherBlockQuantized", "MatMulNBits"} <= ops
    assert "MatMul" not in {n.op_type for n in graph.node if "lm_head" in n.name}
    fp32_big = [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) >= 49152 * 32]
    assert fp32_big == []  # neither the fp32 table nor an fp32 copy for the output layer is left
    tables = [i for i in graph.initializer if i.name.endswith("_q8")]
    assert [list(i.dims) for i in tables] == [[49152, 32]]
    # kept in fp32 on request
    quantize.quantize_dir(out / "onnx", tmp_path / "keep", "weight-int8", keep_fp32=["lm_head", "embeddings"])
    kept = onnx.load(tmp_path / "keep" / "model.onnx").graph
    assert "GatherBlockQuantized" not in {n.op_type for n in kept.node}
    assert "MatMul" in {n.op_type for n in kept.node if "lm_head" in n.name}


def _break_past_keys(export_onnx):
    """An export whose decoder reads a scaled copy of its cached keys: logits without a cache
    stay exact, every step that reuses the cache goes wrong."""
    import onnx
    from onnx import helper, numpy_helper

    def broken(model_dir, output, seq2seq):
        export_onnx(model_dir, output, seq2seq)
        path = output / "model.onnx"
        model = onnx.load(path)
        graph = model.graph
        name = "past_key_values.0.key"
        assert name in {i.name for i in graph.input}
        for node in graph.node:
            node.input[:] = [f"{name}_broken" if i == name else i for i in node.input]
        graph.initializer.append(numpy_helper.from_array(np.array(-3.0, dtype=np.float32), "broken_scale"))
        graph.node.insert(0, helper.make_node("Mul", [name, "broken_scale"], [f"{name}_broken"]))
        onnx.save(model, path)

    return broken


def test_generation_parity_catches_broken_kv_cache(tmp_path, tokenizer_dir, monkeypatch):
    # large initial weights: a random model whose greedy tokens depend on the context (with the
    # default ones it repeats one token forever, whatever its cache holds)
    model_dir = _scratch("gpt2", tokenizer_dir, tmp_path, initializer_range=0.5)
    out = tmp_path / "out"
    monkeypatch.setattr(export, "export_onnx", _break_past_keys(export.export_onnx))
    with pytest.raises(export.ParityError, match="greedy generation"):
        export.export_student(model_dir, out / "onnx", out / "int8", out / "parity.json")
    fp32 = read_json(out / "parity.json")["fp32"]
    assert fp32["max_abs_diff"] <= fp32["tolerance"]  # the logits check alone does not see it
    assert fp32["generation_match"] < 1.0
    assert fp32["passed"] is False
    assert sorted(p.name for p in out.iterdir()) == ["parity.json"]


def test_int8_gate(tmp_path, tokenizer_dir):
    """No flavour passes: `error` stops with the numbers and keys, `report` ships the best one."""
    model_dir = _scratch("gpt2", tokenizer_dir, tmp_path)
    out = tmp_path / "out"
    strict = {"flavours": ["dynamic", "weight-int4"], "on_fail": "error",
              "gate": {"min_top1": 1.01, "min_generation_match": 0.0}}  # unreachable on purpose
    with pytest.raises(export.Int8GateError, match=r"dynamic: top-1 agreement \d\.\d+ < export\.int8\.gate\.min_top1 "
                       r"1\.01.*weight-int4: top-1"):
        export.export_student(model_dir, out / "onnx", out / "int8", out / "parity.json", int8=strict)
    assert sorted(p.name for p in out.iterdir()) == ["parity.json"]
    assert read_json(out / "parity.json")["gate"]["passed"] is False

    report = export.export_student(model_dir, out / "onnx", out / "int8", out / "parity.json",
                                   int8={**strict, "on_fail": "report"})
    assert report["gate"]["passed"] is False
    assert len(report["gate"]["reasons"]) == 2
    assert list(report["flavours"]) == ["dynamic", "weight-int4"]
    best = max(report["flavours"], key=lambda f: (report["flavours"][f]["generation_match"],
                                                  report["flavours"][f]["top1_agreement"]))
    assert report["chosen"] == best
    assert (out / "int8" / "model.onnx").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["int8", "onnx", "parity.json"]
