"""Assemble answered instructions into train/validation splits and a dataset card."""
import logging
from pathlib import Path

from herd import dataset, io, logs

logs.to_file(snakemake.log[0])
params, inp, out = snakemake.params, snakemake.input, snakemake.output
parts = [(path, io.read_jsonl(path)) for path in [*inp.shards, inp.passthrough]]
shard_stats = {int(Path(path).name.split(".")[0]): io.read_json(path) for path in inp.response_stats}
rows, report = dataset.assemble(parts, shard_stats, drop_truncated=params.cfg["drop_truncated"])
report["generation"] = dataset.generation_summary([io.read_json(p) for p in inp.instruction_stats])
train, val = dataset.split(rows, params.cfg["validation_fraction"], params.seed)
dataset.write_split(train, out.train, out.train_jsonl)
dataset.write_split(val, out.validation, out.validation_jsonl)
settings = {**params.settings, "teacher_sha256": io.read_json(inp.manifest)["sha256"]}
io.write_text(out.card, dataset.card(train, val, report, settings, io.read_json(inp.filter_stats),
                                     params.seed_entries))
io.write_json(out.stats, {"train": len(train), "validation": len(val), **report,
                          "failed": len(report["failed_requests"]),
                          "licences": dataset.provenance(train + val, params.seed_entries)[1]})
logging.info("dataset: %d train, %d validation, dropped %s, %d failed teacher requests", len(train), len(val),
             report["dropped"], len(report["failed_requests"]))
