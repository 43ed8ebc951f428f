"""Write the teacher's plan: requests, tokens and dollars, from the config alone."""
from herd import cost, io, logs

logs.to_file(snakemake.log[0])
estimate = cost.plan_from_config(snakemake.params.config)
io.write_json(snakemake.output.json, estimate)
io.write_text(snakemake.output.text, cost.format_plan(estimate))
