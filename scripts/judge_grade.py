"""The judge grades every answer set and its two controls (reference, shuffled reference)."""
import logging
from collections import Counter
from pathlib import Path

from herd import cost, io, judge, logs
from herd.teacher import job_config, make_teacher

logs.to_file(snakemake.log[0])
params, cfg = snakemake.params, snakemake.params.cfg
items = io.read_jsonl(snakemake.input.selected)
# results/judge/answers/{student}/{variant}.jsonl -> set "student/variant"; answers/teacher.jsonl -> "teacher"
root = Path("results/judge/answers")
sets = {Path(p).relative_to(root).with_suffix("").as_posix(): io.read_jsonl(p) for p in snakemake.input.answers}
teacher_cfg = job_config(params.teacher, snakemake.config["teacher"])
teacher = make_teacher(teacher_cfg, io.read_json(snakemake.input.manifest), snakemake.input.get("model"),
                       snakemake.threads, job="judge-grade")
rows, ledger = judge.grade(items, sets, cfg["decoding"], params.seed, teacher,
                           cost.price(params.teacher), cfg["max_failed_fraction"])
io.write_jsonl(snakemake.output.ledger, ledger)
io.write_jsonl(snakemake.output.grades, rows)
by_set = {}
for r in rows:
    by_set.setdefault(r["set"], Counter())[r["grade"] or "unparsable"] += 1
logging.info("judge grades: %d requests, %.1fs (%d from cache), %d completion tokens; %s", len(rows),
             teacher.stats["seconds"], teacher.stats["cached"], teacher.stats["completion_tokens"],
             {k: dict(v) for k, v in sorted(by_set.items())})
