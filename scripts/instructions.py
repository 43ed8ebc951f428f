"""Generate one shard of instructions with the teacher."""
from herd import cost, instructions, io, logs, sources
from herd.teacher import make_teacher

logs.to_file(snakemake.log[0])
params = snakemake.params
seeds = sources.load_seed_tasks(params.seed_tasks)
topics = sources.load_topics(snakemake.input.topics, "text")
teacher = make_teacher(params.teacher["teacher"], io.read_json(snakemake.input.manifest),
                       snakemake.input.get("model"), snakemake.threads,
                       job=f"instructions-{snakemake.wildcards.kind}-{snakemake.wildcards.shard}")
records, stats, ledger = instructions.generate_shard(
    snakemake.wildcards.kind, seeds, topics, params.cfg, params.teacher["seed"],
    int(snakemake.wildcards.shard), teacher, cost.price(params.teacher["teacher"]))
io.write_jsonl(snakemake.output.ledger, ledger)
io.write_jsonl(snakemake.output.records, records)
io.write_json(snakemake.output.stats, stats)
