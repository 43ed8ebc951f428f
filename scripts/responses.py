"""Answer one shard of the kept instructions with the teacher."""
from herd import cost, io, logs, responses, retry
from herd.teacher import job_config, make_teacher

logs.to_file(snakemake.log[0])
params = snakemake.params
prompts = io.read_jsonl(snakemake.input.instructions) + io.read_jsonl(snakemake.input.reanswer)
records = responses.shard_records(prompts, params.cfg["shards"], int(snakemake.wildcards.shard))
teacher_cfg = job_config(params.teacher, snakemake.config["teacher"])
teacher = make_teacher(teacher_cfg, io.read_json(snakemake.input.manifest), snakemake.input.get("model"),
                       snakemake.threads,
                       job=f"responses-{snakemake.wildcards.shard}")
rows, failed, stats, ledger = responses.answer_shard(
    records, params.cfg, params.seed, teacher, cost.price(params.teacher))
# first: a job killed after its outputs are written must still leave what the next run retries
retry.record(snakemake.output.stats, failed, params.retry)  # the next invocation retries what failed
io.write_jsonl(snakemake.output.ledger, ledger)
stats["failed_requests"] = failed
io.write_jsonl(snakemake.output.records, rows)
io.write_json(snakemake.output.stats, stats)
