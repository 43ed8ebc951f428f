"""Diversity report of the dataset's instructions against the seed tasks."""
import torch

from herd import diversity, io, logs, sources

logs.to_file(snakemake.log[0])
params = snakemake.params
torch.set_num_threads(snakemake.threads)
rows = io.read_jsonl(snakemake.input.train) + io.read_jsonl(snakemake.input.validation)
seeds = [s.instruction for s in sources.load_seed_tasks(params.seed_tasks)]
# every generated instruction before the filter: its kept and its excluded records
generated = io.read_jsonl(snakemake.input.kept) + io.read_jsonl(snakemake.input.excluded)
summary = diversity.report(rows, seeds, params.cfg, params.seed, snakemake.output.plot, generated=generated,
                           filter_stats=io.read_json(snakemake.input.filter_stats),
                           kinds=diversity.source_kinds(params.seed_tasks))
io.write_json(snakemake.output.summary, summary)
