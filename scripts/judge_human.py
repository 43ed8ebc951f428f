"""Summarize the human raters' filled sheets the way the judge's grades are summarized."""
import logging

import pandas as pd

from herd import io, judge, judge_sheets, logs
from herd.io import atomic_path

logs.to_file(snakemake.log[0])
out = snakemake.output
rows, problems = judge_sheets.read_sheets(list(snakemake.input.sheets), judge_sheets.read_key(snakemake.input.key))
for problem in problems:
    logging.warning("%s", problem)
summary = judge.summarize(rows, snakemake.params.seed)
with atomic_path(out.summary) as tmp:
    pd.DataFrame(summary).to_csv(tmp, index=False)
text = judge.markdown(summary, who="the raters")
if problems:
    text += f"\n{len(problems)} sheet cells were not a grade A-D (counted as unparsable): see the log.\n"
io.write_text(out.summary_md, text)
logging.info("human summary (%d ratings):\n%s", len(rows), text)
