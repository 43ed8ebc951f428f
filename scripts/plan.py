"""Write the plan: the teacher's requests, tokens and dollars, the students' GPU-hours."""
import logging

from herd import cost, io, logs, plan

logs.to_file(snakemake.log[0])
estimate = plan.plan_from_config(snakemake.params.config)
io.write_json(snakemake.output.json, estimate)
io.write_text(snakemake.output.text, plan.format_plan(estimate))
logging.info("plan: %d teacher requests, $%s, %.1f GPU-hours", estimate["total"]["requests"],
             cost.usd_text(estimate["total"]["usd"]), estimate.get("training", {}).get("total_gpu_hours", 0.0))
