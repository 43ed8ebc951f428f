"""Report: the plan against the ledgers (teacher tokens and dollars per stage) and the students' tokens."""
from pathlib import Path

from herd import io, logs, report_figures, report_html

logs.to_file(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
plan = io.read_json(inp.plan)
spent = report_figures.spent_by_stage(r for p in inp.ledgers for r in io.read_jsonl(p))
metrics = {Path(p).parent.name: io.read_json(p) for p in inp.metrics}
rows = report_figures.cost_rows(plan, spent, metrics)
usd = (plan["total"]["usd"], sum(s["usd"] for s in spent.values()))
report_figures.plan_cost_figure(rows, out.figure, usd)
io.write_text(out.table, report_html.page("Plan and cost", "<h2>Planned against spent</h2>" + report_html.table(rows)))
