# herd: teacher-generated instruction data distilled into a herd of small models.
# `snakemake --cores 2 results/eval.csv` builds everything; see README.md.
import os
import sys
import time
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
import herd.plan  # noqa: E402

configfile: "config.yaml"

# `snakemake --report`: the run's front page (rules/report.smk draws its figures)
report: "config/report/workflow.rst"

try:
    herd.config.validate(config, source="config (config.yaml and any --configfile/--config)")
except herd.config.ConfigError as err:
    raise WorkflowError(str(err))

# The teacher's API key comes from the environment only, and only the jobs that call the
# teacher need it: without it the plan and dry runs work, and those jobs stop at once
# (herd.teacher.make_teacher). `envvars:` makes Snakemake require the variable, and pass it
# on to cluster jobs: declared only when it is set.
_KEY_ENV = config["teacher"]["api_key_env"] if config["teacher"]["backend"] == "openai" else None
if _KEY_ENV and os.environ.get(_KEY_ENV, "").strip():

    envvars:
        _KEY_ENV,

elif _KEY_ENV:
    print(f"Warning: teacher.api_key_env: the environment variable {_KEY_ENV} is not set (or empty). "
          "Planning and dry runs work without it; the jobs that call the teacher will fail until it is set.",
          file=sys.stderr)

# A paid teacher: print the plan and refuse to start above the budget, before any job.
if herd.cost.price(config["teacher"]) != herd.cost.FREE:
    _plan = herd.plan.plan_from_config(config)
    print(herd.plan.format_plan(_plan), file=sys.stderr)
    try:
        herd.plan.check_budget(_plan)
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
include: "rules/judge.smk"
include: "rules/eval.smk"
include: "rules/eval_teacher.smk"
include: "rules/release.smk"
include: "rules/report.smk"


_STARTED = time.time()


onerror:
    # a job killed by a signal in native code (llama.cpp, onnxruntime) says only "SIGILL": its
    # log holds faulthandler's report; say what happened and what to try
    import herd.native

    _logs = [p for p in Path("logs").rglob("*.log") if p.stat().st_mtime >= _STARTED]
    for _advice in herd.native.crash_advice(sorted(_logs)):
        print(f"herd: {_advice}", file=sys.stderr)


rule all:
    default_target: True
    input:
        "results/eval.csv",
