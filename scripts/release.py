"""Release one student: hard-linked copies of its checkpoint and exports, each with a model card."""
import logging
from pathlib import Path

import pandas as pd

from herd import io, logs, model_card, model_files
from herd.io import atomic_dir

logs.to_file(snakemake.log[0])
inp, params, student = snakemake.input, snakemake.params, snakemake.wildcards.student
metrics = io.read_json(inp.metrics)
parity = io.read_json(inp.parity) if "parity" in inp.keys() else None
licences = io.read_json(inp.stats).get("licences", {})
teacher = {"model": params.teacher, "licence": io.read_json(inp.manifest).get("licence")}
with atomic_dir(snakemake.output[0]) as tmp:
    for variant in params.variants:
        folder = Path(tmp) / variant
        linked = model_files.link_tree(inp[variant], folder)
        gone = model_files.missing(folder)
        if gone:  # an export that dropped them: the trained checkpoint's go in (new files, not links)
            copied = model_files.copy_to(inp.pytorch, folder)
            logging.warning("%s/%s lacked %s: copied %s from %s", student, variant, gone, copied, inp.pytorch)
        key = f"eval_{variant}"
        rows = pd.read_csv(inp[key]).to_dict("records") if key in inp.keys() else None
        text = model_card.card(student, variant, dict(params.cfg), metrics, rows, parity, params.dataset,
                               licences, teacher)
        io.write_text(folder / "README.md", text)
        logging.info("released %s/%s: %d files linked from %s", student, variant, linked, inp[variant])
