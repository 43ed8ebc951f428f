"""Generate one shard of instructions with the teacher."""
from herd import cost, instructions, io, logs, retry, sources
from herd.teacher import job_config, make_teacher

logs.to_file(snakemake.log[0])
params = snakemake.params
seeds = sources.load_seed_tasks(params.seed_tasks)
# only topic-guided shards have the topics as input (rules/instructions.smk)
topics = sources.load_topics(snakemake.input.topics, "text") if snakemake.input.get("topics") else []
teacher_cfg = job_config(params.teacher, snakemake.config["teacher"])
teacher = make_teacher(teacher_cfg, io.read_json(snakemake.input.manifest), snakemake.input.get("model"),
                       snakemake.threads,
                       job=f"instructions-{snakemake.wildcards.kind}-{snakemake.wildcards.shard}")
records, stats, ledger = instructions.generate_shard(
    snakemake.wildcards.kind, seeds, topics, params.cfg, params.seed,
    int(snakemake.wildcards.shard), teacher, cost.price(params.teacher))
# first: a job killed after its outputs are written must still leave what the next run retries
retry.record(snakemake.output.stats, stats["failed_requests"], params.retry)  # the next invocation retries what failed
io.write_jsonl(snakemake.output.ledger, ledger)
io.write_jsonl(snakemake.output.records, records)
io.write_json(snakemake.output.stats, stats)
