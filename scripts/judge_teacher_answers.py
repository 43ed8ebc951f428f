"""The teacher answers the judge's items, through its cache."""
import logging

from herd import cost, io, judge, logs
from herd.teacher import job_config, make_teacher

logs.to_file(snakemake.log[0])
params, cfg = snakemake.params, snakemake.params.cfg
items = io.read_jsonl(snakemake.input.selected)
teacher_cfg = job_config(params.teacher, snakemake.config["teacher"])
teacher = make_teacher(teacher_cfg, io.read_json(snakemake.input.manifest), snakemake.input.get("model"),
                       snakemake.threads, job="judge-answers")
rows, ledger = judge.teacher_answers(items, params.system_prompt, cfg["max_new_tokens"], params.seed,
                                     teacher, cost.price(params.teacher), cfg["max_failed_fraction"])
io.write_jsonl(snakemake.output.ledger, ledger)
io.write_jsonl(snakemake.output.answers, rows)
logging.info("judge teacher answers: %d of %d, %.1fs (%d from cache)", len(rows), len(items),
             teacher.stats["seconds"], teacher.stats["cached"])
