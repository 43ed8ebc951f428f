"""Report: the judge's grade distribution per answer set."""
import pandas as pd

from herd import logs, report_eval

logs.to_file(snakemake.log[0])
report_eval.judge_figure(pd.read_csv(snakemake.input.summary), snakemake.output.figure)
