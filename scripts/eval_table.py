"""Concatenate per-variant evaluation rows into results/eval.csv."""
import logging

import pandas as pd

from herd import logs
from herd.io import atomic_path

logs.to_file(snakemake.log[0])
table = pd.concat([pd.read_csv(p) for p in snakemake.input.rows], ignore_index=True)
table = table.sort_values(["student", "variant", "task", "metric"], kind="stable")
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, index=False)
logging.info("eval table: %d rows\n%s", len(table), table.to_string(index=False))
