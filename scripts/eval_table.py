"""Concatenate per-variant evaluation rows into results/eval.csv, and compare the variants
item by item in results/eval_summary.csv (and .md)."""
import logging
from pathlib import Path

import pandas as pd

from herd import eval_summary, int8_gate, io, logs
from herd.io import atomic_path

logs.to_file(snakemake.log[0])
out = snakemake.output
inputs = snakemake.input
teacher_rows = [inputs.teacher_rows] if "teacher_rows" in inputs.keys() else []
table = pd.concat([pd.read_csv(p) for p in [*inputs.rows, *teacher_rows]], ignore_index=True)
table = table.sort_values(["student", "variant", "task", "metric"], kind="stable")

# results/eval/{student}/{variant}.items.jsonl: the job's items, by (student, variant)
items = {(Path(p).parent.name, Path(p).name.removesuffix(".items.jsonl")): io.read_jsonl(p)
         for p in snakemake.input.item_scores}
parameters = {Path(p).parent.name: eval_summary.count_parameters(p) for p in snakemake.input.models}
teacher = io.read_jsonl(inputs.teacher_items) if "teacher_items" in inputs.keys() else None
if "teacher_model" in inputs.keys():  # the GGUF teacher's size, from its tensor table
    parameters[eval_summary.TEACHER] = eval_summary.count_parameters(inputs.teacher_model)
# where each variant's items came from and how they were prompted: only like is compared with like
provenance = {(s, v): {t: f"{src} | {prompt}" for t, src, prompt in zip(g["task"], g["source"], g["prompt"])}
              for (s, v), g in table.groupby(["student", "variant"])}
summary = eval_summary.summarize(items, parameters, snakemake.params.seed, teacher=teacher, provenance=provenance)
# the int8 gate: the export's parity (parity.json) and the benchmark delta, in eval.csv's `gate` column
gate_cfg = snakemake.params.int8
parity = {Path(p).parent.name: io.read_json(p) for p in inputs.parity}
bench = int8_gate.benchmark_check(summary, gate_cfg["gate"].get("max_benchmark_drop"))
verdicts = int8_gate.verdicts(parity, bench) if "onnx-int8" in set(table["variant"]) else {}
table = int8_gate.annotate(table, verdicts)
with atomic_path(out.table) as tmp:
    table.to_csv(tmp, index=False)
logging.info("eval table: %d rows\n%s", len(table), table.to_string(index=False))
with atomic_path(out.summary) as tmp:
    summary.to_csv(tmp, index=False)
md = eval_summary.markdown(summary)
if "judge" in inputs.keys() and inputs.judge:  # the judge's grades, beside the benchmarks
    judge_md = Path(inputs.judge[0]).with_suffix(".md").read_text(encoding="utf-8")
    md += "\n## Instruction following, graded by the judge (results/judge/summary.md)\n\n" + judge_md.split("\n", 1)[1].lstrip("\n")
if verdicts:
    md += "\n## int8 gate (export.int8.gate)\n\n" + "\n".join(f"- {s}: {v}" for s, v in verdicts.items()) + "\n"
io.write_text(out.summary_md, md)
logging.info("eval summary:\n%s", md)
int8_gate.enforce(verdicts, gate_cfg.get("on_fail", "error"))  # last: the log above holds the tables
