"""Filter generated instructions; count and keep every drop with its reason."""
import logging
import time

from herd import filters, io, logs, sources
from herd.prompts import format_seed

logs.to_file(snakemake.log[0])
params = snakemake.params
started = time.perf_counter()
# references: each seed as an instruction and as shown to the teacher (instruction:input),
# so that a copied seed is caught with or without its input
seeds = sorted({text for s in sources.load_seed_tasks(params.seed_tasks)
                for text in (s.instruction, format_seed(s.instruction, s.input))})
records = sorted((r for path in snakemake.input.shards for r in io.read_jsonl(path)),
                 key=lambda r: r["id"])
# processes of the ROUGE-L step: from the config, not params (see rules/filter.smk)
workers = min(snakemake.config["filter"]["rouge_workers"], snakemake.threads)
steps = filters.build_steps({**params.cfg, "rouge_workers": workers}, seeds)
if params.cfg.get("embedding_threshold") is not None:
    import torch

    torch.set_num_threads(snakemake.threads)
logging.info("filter: steps %s", [type(step).__name__ for step in steps])
kept, excluded, stats = filters.apply_filters(records, steps)
if not kept:
    raise ValueError(f"filter: none of {len(records)} generated instructions survived: {stats['dropped_by_reason']}")
io.write_jsonl(snakemake.output.kept, kept)
io.write_jsonl(snakemake.output.excluded, excluded)
io.write_json(snakemake.output.stats, stats)
embedding = next((s for s in steps if isinstance(s, filters.EmbeddingNovelty)), None)
logging.info("filter: %d in, %d kept, dropped %s, %.1fs%s", stats["input"], stats["kept"], stats["dropped_by_reason"],
             time.perf_counter() - started,
             f" ({embedding.seconds_embedding:.1f}s embedding)" if embedding else "")
