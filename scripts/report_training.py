"""Report: training and validation loss per student, with its speed."""
from pathlib import Path

from herd import io, logs, report_figures

logs.to_file(snakemake.log[0])
metrics = {Path(p).parent.name: io.read_json(p) for p in snakemake.input.metrics}
report_figures.training_figure(metrics, snakemake.output.figure)
