"""Export one student to ONNX and int8, checking logits against PyTorch."""
from herd import export, logs

logs.to_file(snakemake.log[0])
out = snakemake.output
export.export_student(snakemake.input.model, out.onnx, out.int8, out.parity,
                      tolerance=snakemake.params.cfg["tolerance"])
