"""Seed rows that go into the dataset directly (passthrough) or through the teacher (reanswer)."""
import logging

from herd import io, logs, sources

logs.to_file(snakemake.log[0])
for use in ("reanswer", "passthrough"):
    rows = sources.seed_rows(snakemake.params.seed_tasks, use)
    io.write_jsonl(snakemake.output[use], rows)
    logging.info("seed rows to %s: %d", use, len(rows))
