"""Report: rows dropped per reason (filters, assembly), and the dataset card as a page."""
from pathlib import Path

from herd import io, logs, report_figures, report_html

logs.to_file(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
report_figures.filter_drops_figure(io.read_json(inp.filter_stats), io.read_json(inp.dataset_stats), out.figure)
card = Path(inp.card).read_text(encoding="utf-8")
io.write_text(out.card, report_html.page("Dataset card", report_html.markdown(card)))
