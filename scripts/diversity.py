"""Diversity report of the dataset's instructions against the seed tasks."""
from herd import diversity, io, logs, sources

logs.to_file(snakemake.log[0])
params = snakemake.params
rows = io.read_jsonl(snakemake.input.train) + io.read_jsonl(snakemake.input.validation)
seeds = [s.instruction for s in sources.load_seed_tasks(params.seed_tasks)]
summary = diversity.report(rows, seeds, params.cfg, params.seed, snakemake.output.plot)
io.write_json(snakemake.output.summary, summary)
