"""Evaluate one student variant: benchmarks through lm-eval, ROUGE-L against the teacher."""
import tempfile

import pandas as pd

from herd import evaluation, io, logs
from herd.io import atomic_path
from herd.prompts import student_prompt

logs.to_file(snakemake.log[0])
cfg, wc = snakemake.params.cfg, snakemake.wildcards
validation = io.read_jsonl(snakemake.input.validation)[: cfg["rouge_limit"]]
items = []
with tempfile.TemporaryDirectory() as work:
    rows = evaluation.evaluate_student(
        student=wc.student, variant=wc.variant, model_path=snakemake.input.model,
        validation_records=validation, tasks=cfg["benchmarks"], root=cfg["benchmark_root"],
        work_dir=work, limit=cfg["limit"], seed=snakemake.params.seed,
        max_new_tokens=cfg["max_new_tokens"], prompt_fn=student_prompt,
        threads=snakemake.threads, items=items,
        instruction_template=cfg.get("instruction_template", False), gpus=cfg.get("gpus"),
        validation_source=snakemake.input.validation)
with atomic_path(snakemake.output.rows) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)
io.write_jsonl(snakemake.output.item_scores, items)
