"""Concatenate per-variant evaluation rows into results/eval.csv, and compare the variants
item by item in results/eval_summary.csv (and .md)."""
import logging
from pathlib import Path

import pandas as pd

from herd import eval_summary, io, logs
from herd.io import atomic_path

logs.to_file(snakemake.log[0])
out = snakemake.output
table = pd.concat([pd.read_csv(p) for p in snakemake.input.rows], ignore_index=True)
table = table.sort_values(["student", "variant", "task", "metric"], kind="stable")
with atomic_path(out.table) as tmp:
    table.to_csv(tmp, index=False)
logging.info("eval table: %d rows\n%s", len(table), table.to_string(index=False))

# results/eval/{student}/{variant}.items.jsonl: the job's items, by (student, variant)
items = {(Path(p).parent.name, Path(p).name.removesuffix(".items.jsonl")): io.read_jsonl(p)
         for p in snakemake.input.item_scores}
parameters = {Path(p).parent.name: eval_summary.count_parameters(p) for p in snakemake.input.models}
summary = eval_summary.summarize(items, parameters, snakemake.params.seed)
with atomic_path(out.summary) as tmp:
    summary.to_csv(tmp, index=False)
io.write_text(out.summary_md, eval_summary.markdown(summary))
logging.info("eval summary:\n%s", eval_summary.markdown(summary))
