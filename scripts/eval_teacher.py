"""Score the teacher once on the students' lm-eval benchmarks."""
import tempfile

import pandas as pd

from herd import io, logs, teacher_lm
from herd.io import atomic_path

logs.to_file(snakemake.log[0])
params = snakemake.params
cfg = params.cfg
teacher_cfg = snakemake.config["teacher"]  # validated, with defaults; params hold the keys that rescore
items = []
with tempfile.TemporaryDirectory() as work:
    rows = teacher_lm.evaluate_teacher(
        teacher_cfg, io.read_json(snakemake.input.manifest), snakemake.input.get("model"),
        tasks=cfg["benchmarks"], root=cfg["benchmark_root"], work_dir=work, limit=cfg["limit"],
        seed=params.seed, threads=snakemake.threads, items=items,
        instruction_template=cfg.get("instruction_template", False))
with atomic_path(snakemake.output.rows) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)
io.write_jsonl(snakemake.output.item_scores, items)
