"""Int8 (and int4) flavours of an ONNX export, each written as a directory optimum loads.

Flavours (the names of `export.int8.flavours`):

- `dynamic`: onnxruntime's dynamic quantization, one int8 scale per weight tensor
  (MatMulInteger, embedding tables included); activations are quantized at run time,
  per tensor.
- `dynamic-per-channel`: the same with one scale per output channel, and the embedding
  tables (and a tied output layer) 8-bit block-wise as below.
- `weight-int8`, `weight-int4`: weight-only block-wise quantization (MatMulNBits, one
  scale and zero point per `block_size` weights); activations stay fp32. Embedding
  tables are quantized too (GatherBlockQuantized, 8 bits), and an output layer tied to
  the embedding (MatMul on Transpose(embedding)) reads the same quantized table through
  MatMulNBits, so a tied table is stored once, in 8 bits.

`keep_fp32` leaves parts in fp32: `lm_head` (the output projection) and `embeddings`
(the token embedding tables).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import numpy as np

FLAVOURS = ("dynamic", "dynamic-per-channel", "weight-int8", "weight-int4")
KEEP_FP32 = ("lm_head", "embeddings")
ONNX_MARK = ".onnx"  # graphs and their external data; everything else is metadata
MS_DOMAIN = "com.microsoft"
MIN_TABLE = 1 << 16  # smaller Gather tables (e.g. T5's relative position bias) stay fp32
# MatMulNBits compute type: 1 multiplies in fp32 on the dequantized weights, the same numbers on
# every CPU. 4 (int8 activations) is faster where the CPU has VNNI or AMX, but elsewhere onnxruntime
# falls back to fp32, so a gate passed on one host says little about another. Measured on one trained
# SmolLM2-135M, weight-int8, on an Intel host with AMX: top-1 agreement 0.929 at 1, 0.821 at 4.
ACCURACY_LEVEL = 1


def quantize_dir(onnx_dir: Path, out_dir: Path, flavour: str = "dynamic", block_size: int = 32,
                 keep_fp32: tuple[str, ...] | list[str] = (), accuracy_level: int = ACCURACY_LEVEL) -> None:
    """Write the `flavour` copy of every graph in `onnx_dir` into `out_dir`, plus its metadata files.

    A graph whose weights are external data (models over 2 GB) keeps them external,
    as `<name>.onnx.data`.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"export.int8.flavours: unknown flavour {flavour!r}; choose from {FLAVOURS}")
    unknown = sorted(set(keep_fp32) - set(KEEP_FP32))
    if unknown:
        raise ValueError(f"export.int8.keep_fp32: unknown parts {unknown}; choose from {KEEP_FP32}")
    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(onnx_dir.iterdir()):
        if path.is_file() and ONNX_MARK not in path.name:
            shutil.copy2(path, out_dir / path.name)
    for graph in sorted(onnx_dir.glob("*.onnx")):
        with _quiet_root_logger():
            if flavour.startswith("dynamic"):
                _dynamic(graph, out_dir / graph.name, flavour == "dynamic-per-channel", keep_fp32, block_size,
                         accuracy_level)
            else:
                _weight_only(graph, out_dir / graph.name, 8 if flavour == "weight-int8" else 4, block_size,
                             keep_fp32, accuracy_level)


def _uses_external_data(graph: Path) -> bool:
    from optimum.onnx.utils import check_model_uses_external_data

    return bool(check_model_uses_external_data(graph))


def _excluded_nodes(graph: Path, keep_fp32) -> list[str]:
    """Names of the output projection's MatMul nodes, when `lm_head` stays fp32."""
    if "lm_head" not in keep_fp32:
        return []
    import onnx

    model = onnx.load(graph, load_external_data=False)
    return [n.name for g in _graphs(model.graph) for n in g.node if n.op_type == "MatMul" and "lm_head" in n.name]


def _dynamic(graph: Path, out: Path, per_channel: bool, keep_fp32, block_size: int, accuracy_level: int) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # `dynamic` is the historical flavour: its embedding Gather gets one int8 scale per table too.
    # `dynamic-per-channel` leaves tables to quantize_tables (block-wise), which keeps far more quality.
    tables_apart = per_channel or "embeddings" in keep_fp32
    external = _uses_external_data(graph)
    quantize_dynamic(
        graph, out, weight_type=QuantType.QInt8, per_channel=per_channel,
        nodes_to_exclude=_excluded_nodes(graph, keep_fp32),
        use_external_data_format=external,
        # merged decoders keep both branches inside an If node
        extra_options={"EnableSubgraph": True},
        op_types_to_quantize=["MatMul"] if tables_apart else None,
    )
    if per_channel and "embeddings" not in keep_fp32:
        import onnx

        model = onnx.load(out)
        quantize_tables(model, block_size, tied_head="lm_head" not in keep_fp32, accuracy_level=accuracy_level)
        _save(model, out, external)


def _weight_only(graph: Path, out: Path, bits: int, block_size: int, keep_fp32, accuracy_level: int) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    external = _uses_external_data(graph)
    model = onnx.load(graph)
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=False, bits=bits,
                                          accuracy_level=accuracy_level, op_types_to_quantize=("MatMul",))
    quant = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=False,
                                 accuracy_level=accuracy_level, algo_config=config,
                                 nodes_to_exclude=_excluded_nodes(graph, keep_fp32))
    quant.process()
    model = quant.model.model
    if "embeddings" not in keep_fp32:
        quantize_tables(model, block_size, tied_head="lm_head" not in keep_fp32, accuracy_level=accuracy_level)
    _save(model, out, external)


def _save(model, out: Path, external: bool) -> None:
    import onnx

    for path in (out, out.parent / f"{out.name}.data"):
        path.unlink(missing_ok=True)
    onnx.save_model(model, out, save_as_external_data=external, all_tensors_to_one_file=True,
                    location=f"{out.name}.data")


def _graphs(graph):
    """A graph and every subgraph inside it (the branches of a merged decoder's If node)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def block_quantize(table: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric 8-bit block quantization along the last axis: (uint8 values, scales, uint8 zero points)."""
    rows, cols = table.shape
    blocks = table.reshape(rows, cols // block_size, block_size).astype(np.float32)
    low = np.minimum(blocks.min(-1), 0.0)
    high = np.maximum(blocks.max(-1), 0.0)
    scale = (high - low) / 255.0
    scale[scale == 0] = 1.0  # an all-zero block: any scale reproduces it
    zero = np.clip(np.round(-low / scale), 0, 255)
    values = np.clip(np.round(blocks / scale[..., None]) + zero[..., None], 0, 255)
    return (values.astype(np.uint8).reshape(rows, cols), scale.astype(np.float32), zero.astype(np.uint8))


def quantize_tables(model, block_size: int, tied_head: bool = True,
                    accuracy_level: int = ACCURACY_LEVEL) -> list[str]:
    """Embedding tables (Gather on a 2-D fp32 initializer) to GatherBlockQuantized, in place.

    With `tied_head`, a MatMul on Transpose(table) (an output layer tied to the embedding)
    becomes MatMulNBits on the same quantized table, so the table is stored once.
    Returns the names of the tables quantized.
    """
    from onnx import TensorProto, helper, numpy_helper

    main = model.graph
    inits = {i.name: i for i in main.initializer}

    def table(name):
        init = inits.get(name)
        if init is None or init.data_type != TensorProto.FLOAT or len(init.dims) != 2:
            return None
        rows, cols = init.dims
        return init if rows * cols >= MIN_TABLE and table_block(cols, block_size) else None

    graphs = list(_graphs(main))
    gathers = [(g, n) for g in graphs for n in g.node
               if n.op_type == "Gather" and table(n.input[0]) is not None
               and _attr(n, "axis", 0) == 0]
    names = sorted({n.input[0] for _, n in gathers})
    transposed = {n.output[0]: n.input[0] for g in graphs for n in g.node
                  if n.op_type == "Transpose" and n.input[0] in names
                  and list(_attr(n, "perm", [1, 0])) == [1, 0]}
    heads = [(g, n) for g in graphs for n in g.node
             if tied_head and n.op_type == "MatMul" and n.input[1] in transposed]
    blocks = {name: table_block(inits[name].dims[1], block_size) for name in names}
    for name in names:
        rows, cols = inits[name].dims
        values, scale, zero = block_quantize(numpy_helper.to_array(inits[name]), blocks[name])
        main.initializer.extend([numpy_helper.from_array(values, f"{name}_q8"),
                                 numpy_helper.from_array(scale, f"{name}_q8_scale"),
                                 numpy_helper.from_array(zero, f"{name}_q8_zero")])
        if any(transposed[n.input[1]] == name for _, n in heads):  # the shape MatMulNBits reads it in
            main.initializer.append(numpy_helper.from_array(
                np.array([rows, cols // blocks[name], blocks[name]], dtype=np.int64), f"{name}_q8_blocks"))
    for g, node in gathers:
        name = node.input[0]
        _replace(g, node, helper.make_node(
            "GatherBlockQuantized", [f"{name}_q8", node.input[1], f"{name}_q8_scale", f"{name}_q8_zero"],
            list(node.output), name=f"{node.name}_q8", domain=MS_DOMAIN,
            gather_axis=0, quantize_axis=1, block_size=blocks[name], bits=8))
    for g, node in heads:
        name = transposed[node.input[1]]
        rows, cols = inits[name].dims
        weight = f"{node.name}_q8_B"  # the table as MatMulNBits reads it: (rows, blocks, block)
        reshape = helper.make_node("Reshape", [f"{name}_q8", f"{name}_q8_blocks"], [weight],
                                   name=f"{node.name}_q8_reshape")
        _replace(g, node, reshape)
        g.node.insert(list(g.node).index(reshape) + 1, helper.make_node(
            "MatMulNBits", [node.input[0], weight, f"{name}_q8_scale", f"{name}_q8_zero"], list(node.output),
            name=f"{node.name}_q8", domain=MS_DOMAIN, K=cols, N=rows, bits=8, block_size=blocks[name],
            accuracy_level=accuracy_level))
    _drop_unused(main, graphs, names)
    if names and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return names


def table_block(cols: int, block_size: int) -> int | None:
    """The block size for a table of `cols` columns: the largest power of two <= block_size that
    divides cols, at least 16 (GatherBlockQuantized's smallest); None when there is none."""
    size = 1 << (block_size.bit_length() - 1)
    while size >= 16 and cols % size:
        size //= 2
    return size if size >= 16 else None


def _attr(node, name: str, default):
    from onnx import helper

    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else default


def _replace(graph, old, new) -> None:
    index = list(graph.node).index(old)
    graph.node.remove(old)
    graph.node.insert(index, new)


def _drop_unused(main, graphs, names) -> None:
    """Remove Transpose nodes and fp32 tables that nothing reads any more."""
    while True:
        used = {i for g in graphs for n in g.node for i in n.input} | {o.name for g in graphs for o in g.output}
        dead = [(g, n) for g in graphs for n in g.node
                if n.op_type == "Transpose" and n.input[0] in names and n.output[0] not in used]
        if not dead:
            break
        for g, n in dead:
            g.node.remove(n)
    used = {i for g in graphs for n in g.node for i in n.input}
    for init in [i for i in main.initializer if i.name in names and i.name not in used]:
        main.initializer.remove(init)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizers log one line per node (to the root logger or their own); hide them."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
