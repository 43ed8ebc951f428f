"""Put every student variant's sample answers side by side in results/samples.md."""
from pathlib import Path

from herd import io, logs, samples

logs.to_file(snakemake.log[0])
answers = {}
for path in snakemake.input:
    rows = io.read_jsonl(path)
    key = (rows[0]["student"], rows[0]["variant"]) if rows else (Path(path).parent.name, Path(path).stem)
    answers[key] = rows
io.write_text(snakemake.output[0], samples.table(answers, snakemake.params.max_new_tokens))
