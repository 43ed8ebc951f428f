"""Fine-tune one student (on the GPUs the job was given, else the CPU); a rerun after a kill or
a requeue resumes from results/students/{student}/checkpoint."""
from pathlib import Path

from herd import io, logs, placement, students
from herd.config import student
from herd.rng import derive_seed


def main(snakemake):
    logs.to_file(snakemake.log[0])
    cfg = snakemake.params.cfg
    every = student(snakemake.config, cfg["name"])["checkpoint_every"]  # not a param: it reruns nothing
    train_cfg = students.TrainConfig(
        **{k: cfg[k] for k in ("learning_rate", "epochs", "batch_size", "grad_accum", "max_length",
                               "warmup_ratio", "weight_decay", "max_steps", "batching")},
        checkpoint_every=every,
        seed=derive_seed(snakemake.params.seed, "students", cfg["name"]),
    )
    metrics = students.train(snakemake.input.base, io.read_jsonl(snakemake.input.train),
                             io.read_jsonl(snakemake.input.validation), train_cfg, snakemake.output.model,
                             place=placement.local_placement(cfg), threads=snakemake.threads,
                             log_path=snakemake.log[0],
                             checkpoint=Path(snakemake.output.model).parent / "checkpoint",
                             code_version=snakemake.params.code)
    io.write_json(snakemake.output.metrics, metrics)


# data-parallel training spawns processes that import this file again: run only as the script
if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by snakemake)
