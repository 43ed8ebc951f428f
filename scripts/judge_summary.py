"""Summarize the judge's grades, and write the blinded rating sheet for human raters."""
import logging

import pandas as pd

from herd import io, judge, judge_sheets, logs
from herd.io import atomic_path

logs.to_file(snakemake.log[0])
out, seed = snakemake.output, snakemake.params.seed
grades = io.read_jsonl(snakemake.input.grades)
rows = judge.summarize(grades, seed)
with atomic_path(out.summary) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)
text = judge.markdown(rows)
io.write_text(out.summary_md, text)
sheet, key = judge_sheets.make_sheet(io.read_jsonl(snakemake.input.selected), grades, seed)
judge_sheets.write_csv(out.sheet, sheet, judge_sheets.SHEET_COLUMNS)
judge_sheets.write_csv(out.key, key, judge_sheets.KEY_COLUMNS)
logging.info("judge summary:\n%s", text)
