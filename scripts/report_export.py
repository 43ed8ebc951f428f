"""Report: exported sizes, parity with PyTorch and the int8 gate per student."""
from pathlib import Path

from herd import io, logs, report_figures, report_html

logs.to_file(snakemake.log[0])
rows = report_figures.export_rows({Path(p).parent.name: io.read_json(p) for p in snakemake.input.parity})
report_figures.export_figure(rows, snakemake.output.figure)
io.write_text(snakemake.output.table, report_html.page(
    "Export", "<h2>Exported models against PyTorch</h2>" + report_html.table(rows)))
