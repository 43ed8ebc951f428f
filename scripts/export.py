"""Export one student to ONNX and int8, checking logits and greedy generation against PyTorch."""
from herd import export, logs

logs.to_file(snakemake.log[0])
out, cfg = snakemake.output, snakemake.params.cfg
export.export_student(snakemake.input.model, out.onnx, out.int8, out.parity,
                      tolerance=cfg["tolerance"], int8=cfg["int8"])
