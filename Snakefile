# herd: teacher-generated instruction data distilled into a herd of small models.
# `snakemake --cores 2 results/eval.csv` builds everything; see README.md.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

# herd's code is found from src/ by the workflow and by every job (conda envs included)
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=SRC)
import herd.config  # noqa: E402
import herd.cost  # noqa: E402

configfile: "config.yaml"

try:
    herd.config.validate(config, source="config (config.yaml and any --configfile/--config)")
except herd.config.ConfigError as err:
    raise WorkflowError(str(err))

# The teacher's API key comes from the environment only; a missing one stops the run here.
if config["teacher"]["backend"] == "openai" and config["teacher"]["api_key_env"]:

    envvars:
        config["teacher"]["api_key_env"],

    if not os.environ[config["teacher"]["api_key_env"]].strip():
        raise WorkflowError(f"teacher.api_key_env: the environment variable {config['teacher']['api_key_env']} is empty")

# A paid teacher: print the plan and refuse to start above the budget, before any job.
if herd.cost.price(config["teacher"]) != herd.cost.FREE:
    _plan = herd.cost.plan_from_config(config)
    print(herd.cost.format_plan(_plan), file=sys.stderr)
    try:
        herd.cost.check_budget(_plan)
    except ValueError as err:
        raise WorkflowError(str(err))


include: "rules/common.smk"
include: "rules/downloads.smk"
include: "rules/assets.smk"
include: "rules/plan.smk"
include: "rules/topics.smk"
include: "rules/instructions.smk"
include: "rules/filter.smk"
include: "rules/seed_rows.smk"
include: "rules/responses.smk"
include: "rules/dataset.smk"
include: "rules/diversity.smk"
include: "rules/students.smk"
include: "rules/export.smk"
include: "rules/eval.smk"


rule all:
    default_target: True
    input:
        "results/eval.csv",
