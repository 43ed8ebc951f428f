"""Report: the evaluation summary as a table, scores per task, average against size."""
import pandas as pd

from herd import io, logs, report_eval, report_html

logs.to_file(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
summary, table = pd.read_csv(inp.summary), pd.read_csv(inp.table)
report_eval.task_bars_figure(report_eval.task_scores(summary, table), out.tasks)
report_eval.score_vs_parameters_figure(report_eval.average_points(summary), out.size)
verdicts = {"higher": "higher", "lower": "lower"}
io.write_text(out.table, report_html.page("Evaluation summary", "<h2>Evaluation summary</h2>" + report_html.table(
    summary.astype(object).where(summary.notna(), None).to_dict("records"), classes=verdicts)))
