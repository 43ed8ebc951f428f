"""Build one student's base checkpoint: converted GGUF, Hub model, or a config from scratch."""
import logging
from pathlib import Path

from herd import assets, logs
from herd.rng import derive_seed

logs.to_file(snakemake.log[0])
out = Path(snakemake.output[0])
student = snakemake.wildcards.student
assets.build_student_base(dict(snakemake.params.source), out, snakemake.input.get("tokenizer"),
                          seed=derive_seed(snakemake.params.seed, "student_base", student))
logging.info("student base %s ready in %s", student, out)
