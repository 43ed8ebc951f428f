"""Fine-tune one student."""
import torch

from herd import io, logs, students
from herd.rng import derive_seed

logs.to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.cfg
train_cfg = students.TrainConfig(
    **{k: cfg[k] for k in ("learning_rate", "epochs", "batch_size", "grad_accum", "max_length",
                           "warmup_ratio", "weight_decay", "max_steps")},
    seed=derive_seed(snakemake.params.seed, "students", cfg["name"]),
)
metrics = students.train(snakemake.input.base, io.read_jsonl(snakemake.input.train),
                         io.read_jsonl(snakemake.input.validation), train_cfg, snakemake.output.model)
io.write_json(snakemake.output.metrics, metrics)
