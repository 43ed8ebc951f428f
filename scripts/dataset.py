"""Assemble answered instructions into train/validation splits and a dataset card."""
import logging

from herd import dataset, io, logs

logs.to_file(snakemake.log[0])
params, out = snakemake.params, snakemake.output
rows = [r for path in snakemake.input.shards for r in io.read_jsonl(path)]
rows += io.read_jsonl(snakemake.input.passthrough)
rows, dropped = dataset.clean(rows, drop_truncated=params.cfg["drop_truncated"])
train, val = dataset.split(rows, params.cfg["validation_fraction"], params.seed)
dataset.write_split(train, out.train, out.train_jsonl)
dataset.write_split(val, out.validation, out.validation_jsonl)
settings = {**params.settings, "teacher_sha256": io.read_json(snakemake.input.manifest)["sha256"]}
io.write_text(out.card, dataset.card(train, val, dropped, settings,
                                     io.read_json(snakemake.input.filter_stats), params.licences))
io.write_json(out.stats, {"train": len(train), "validation": len(val), "dropped": dropped})
logging.info("dataset: %d train, %d validation, dropped %s", len(train), len(val), dropped)
