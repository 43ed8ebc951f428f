"""Filter generated instructions; count and keep every drop with its reason."""
import logging

from herd import filters, io, logs, sources
from herd.prompts import format_seed

logs.to_file(snakemake.log[0])
params = snakemake.params
# references: each seed as an instruction and as shown to the teacher (instruction:input),
# so that a copied seed is caught with or without its input
seeds = sorted({text for s in sources.load_seed_tasks(params.seed_tasks)
                for text in (s.instruction, format_seed(s.instruction, s.input))})
records = sorted((r for path in snakemake.input.shards for r in io.read_jsonl(path)),
                 key=lambda r: r["id"])
kept, excluded, stats = filters.apply_filters(records, filters.build_steps(params.cfg, seeds))
if not kept:
    raise ValueError(f"filter: none of {len(records)} generated instructions survived: {stats['dropped_by_reason']}")
io.write_jsonl(snakemake.output.kept, kept)
io.write_jsonl(snakemake.output.excluded, excluded)
io.write_json(snakemake.output.stats, stats)
logging.info("filter: %d in, %d kept, dropped %s", stats["input"], stats["kept"], stats["dropped_by_reason"])
