"""One student variant answers the judge's items, greedily, prompted as it was trained."""
import logging
import time

from herd import evaluation, io, judge_tasks, logs
from herd.prompts import student_prompt

logs.to_file(snakemake.log[0])
items = io.read_jsonl(snakemake.input.selected)
start = time.perf_counter()
model, tokenizer = evaluation.load_variant(snakemake.wildcards.variant, snakemake.input.model, snakemake.threads)
texts = evaluation.generate(model, tokenizer, [student_prompt(judge_tasks.task_text(it)) for it in items],
                            snakemake.params.max_new_tokens)
io.write_jsonl(snakemake.output.answers, [{"item": it["id"], "answer": t} for it, t in zip(items, texts)])
logging.info("judge answers %s/%s: %d items, %.1fs", snakemake.wildcards.student, snakemake.wildcards.variant,
             len(items), time.perf_counter() - start)
