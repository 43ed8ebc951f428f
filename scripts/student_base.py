"""Build one student's base checkpoint: converted GGUF, Hub model, or a config from scratch."""
import logging
import tempfile
from pathlib import Path

from herd import assets, logs
from herd.rng import derive_seed

logs.to_file(snakemake.log[0])
source = dict(snakemake.params.source)
out = Path(snakemake.output[0])
student = snakemake.wildcards.student

if "gguf" in source:
    with tempfile.TemporaryDirectory() as tmp:
        gguf = Path(tmp) / "model.gguf"
        manifest = assets.build_gguf(source["gguf"], gguf)
        logging.info("converting %s (%s) to a Hugging Face checkpoint", source["gguf"], manifest["sha256"])
        assets.convert_gguf(gguf, out)
elif "hub" in source:
    assets.fetch_hub(source["hub"], out)
else:
    scratch = source["scratch"]
    tokenizer = snakemake.input.get("tokenizer", scratch["tokenizer"])
    assets.build_scratch(scratch["family"], dict(scratch.get("arch", {})), str(tokenizer), out,
                         seed=derive_seed(snakemake.params.seed, "student_base", student))
logging.info("student base %s ready in %s", student, out)
