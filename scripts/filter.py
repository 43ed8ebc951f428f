"""Filter generated instructions; count and keep every drop with its reason."""
import logging
import time

from herd import filters, io, logs

logs.to_file(snakemake.log[0])
params = snakemake.params
started = time.perf_counter()
seeds = filters.seed_references(params.seed_tasks)
records = [r for path in snakemake.input.shards for r in io.read_jsonl(path)]
# processes of the ROUGE-L step: from the config, not params (see rules/filter.smk)
workers = min(snakemake.config["filter"]["rouge_workers"], snakemake.threads)
kept, excluded, stats, steps = filters.run_filter(records, params.cfg, seeds, workers=workers,
                                                  threads=snakemake.threads, shards=len(snakemake.input.shards))
io.write_jsonl(snakemake.output.kept, kept)
io.write_jsonl(snakemake.output.excluded, excluded)
io.write_json(snakemake.output.stats, stats)
embedding = next((s for s in steps if isinstance(s, filters.EmbeddingNovelty)), None)
logging.info("filter: %d in, %d kept, dropped %s, %.1fs%s", stats["input"], stats["kept"], stats["dropped_by_reason"],
             time.perf_counter() - started,
             f" ({embedding.seconds_embedding:.1f}s embedding)" if embedding else "")
