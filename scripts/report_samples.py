"""Report: results/samples.md (answers side by side) as a page."""
from pathlib import Path

from herd import io, logs, report_html

logs.to_file(snakemake.log[0])
text = Path(snakemake.input.samples).read_text(encoding="utf-8")
io.write_text(snakemake.output.page, report_html.page("Samples", report_html.markdown(text)))
