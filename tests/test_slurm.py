"""The tiny workflow on a real SLURM cluster, through Snakemake's slurm executor plugin.

Runs where SLURM answers (`sinfo`); `bash .ci/slurm-cluster.sh` starts a single-node
cluster on this machine. Elsewhere the test is skipped, unless HERD_REQUIRE_SLURM=1
(as in CI), where a missing cluster is a failure.

One run of `--workflow-profile profiles/slurm` proves two things: every job goes
through sbatch (the plugin's per-job SLURM logs, the teacher's shards packed into
group jobs), and a job cancelled with `scancel` while it runs is resubmitted by
snakemake (`retries` in the profile) so that the run still completes.

The run starts with the teacher cache of the local tiny run (the `tiny_run` fixture,
shared with test_workflow.py): the teacher's answers are the same, and CI does not
pay twice for generating them on 2 cores. Every job still runs as a SLURM job.
"""
import importlib.util
import os
import shutil
import subprocess
import threading
import time

import pandas as pd
import pytest
from conftest import SHARED, copy_project, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present"),
]

# the longest job of the tiny run (about 100 s of training): cancelled once while it runs
CANCEL_RULE, CANCEL_WILDCARDS = "students", "smollm2-135m"
RUN_TIMEOUT_S = 40 * 60


def slurm_problem() -> str | None:
    """Why SLURM cannot be used here, or None when it answers and the plugin is installed."""
    if shutil.which("sinfo") is None:
        return "sinfo not found (start a cluster with: bash .ci/slurm-cluster.sh)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%a %T"], capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 60 s"
    if proc.returncode != 0:
        return f"sinfo does not answer: {proc.stderr.strip()}"
    if not any(state.split()[-1].rstrip("*") in {"idle", "mixed", "allocated", "completing"}
               for state in proc.stdout.splitlines() if state.startswith("up")):
        return f"no usable SLURM node: {proc.stdout.strip()!r}"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    return None


@pytest.fixture(scope="session")
def slurm():
    """Skip (or fail, under HERD_REQUIRE_SLURM=1) where SLURM is not usable; session-scoped
    so that pytest decides before it builds the session-scoped tiny_run."""
    problem = slurm_problem()
    if problem:
        if os.environ.get("HERD_REQUIRE_SLURM") == "1":
            pytest.fail(f"HERD_REQUIRE_SLURM=1 but SLURM is not usable: {problem}")
        pytest.skip(problem)


def our_jobs(project) -> list[dict]:
    """This project's SLURM jobs as squeue shows them (finished ones too, for MinJobAge)."""
    proc = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%k|%Z"],
                          capture_output=True, text=True, timeout=30, check=False)
    jobs = []
    for line in proc.stdout.splitlines():
        jobid, state, comment, workdir = (line.split("|") + ["", "", ""])[:4]
        if os.path.realpath(workdir.strip()) == os.path.realpath(project):
            jobs.append({"id": jobid.strip(), "state": state.strip(), "comment": comment.strip()})
    return jobs


def cancel_first_running(project, comment: str, log, done: threading.Event, seen: list) -> str | None:
    """Poll squeue until the job with this comment runs, scancel it, and return its SLURM id."""
    while not done.is_set():
        for job in our_jobs(project):
            seen.append(job)
            if job["comment"] == comment and job["state"] == "RUNNING":
                # cancel once the rule's script has started (it opened its log), so the
                # cancellation interrupts real work and its partial outputs
                for _ in range(60):
                    if log.exists() and log.stat().st_size > 0:
                        break
                    time.sleep(1)
                subprocess.run(["scancel", job["id"]], timeout=30, check=False)
                return job["id"]
        time.sleep(1)
    return None


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory, request):
    """The tiny run on SLURM, with one job of CANCEL_RULE cancelled while it runs."""
    tiny_run = request.getfixturevalue("tiny_run")  # only once SLURM is known to answer
    project = copy_project(tmp_path_factory.mktemp("slurm"))
    shutil.copytree(tiny_run / ".herd-cache", project / ".herd-cache")
    result = {}

    def run():
        result["proc"] = snakemake(
            project, "results/eval.csv", "--configfile", "config/tiny.yaml",
            "--workflow-profile", "profiles/slurm",
            # keep every job's SLURM log (the plugin deletes a successful job's log)
            "--slurm-keep-successful-logs",
            # poll squeue sooner after each submission than the profile's 20 s (CI time)
            "--slurm-init-seconds-before-status-checks", "5",
        )

    start = time.monotonic()
    done = threading.Event()
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    seen: list = []
    comment = f"rule_{CANCEL_RULE}_wildcards_{CANCEL_WILDCARDS}"  # the plugin's sbatch --comment
    log = project / "logs" / CANCEL_RULE / f"{CANCEL_WILDCARDS}.log"  # the rule's log: directive
    watcher = threading.Thread(
        target=lambda: result.update(cancelled=cancel_first_running(project, comment, log, done, seen)),
        daemon=True)
    watcher.start()
    runner.join(RUN_TIMEOUT_S)
    done.set()
    watcher.join(60)
    if runner.is_alive():
        for job in our_jobs(project):
            subprocess.run(["scancel", job["id"]], timeout=30, check=False)
        pytest.fail(f"the SLURM run did not finish in {RUN_TIMEOUT_S} s")
    proc = result["proc"]
    result.update(project=project, seconds=time.monotonic() - start, seen=seen)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                         for p in sorted((project / ".snakemake/slurm_logs").rglob("*.log")))
        pytest.fail(f"tiny workflow on SLURM failed:\n{proc.stderr[-8000:]}\n{logs}")
    print(f"tiny run on SLURM: {result['seconds']:.0f} s; cancelled SLURM job {result.get('cancelled')}")
    return result


def test_tiny_run_goes_through_slurm(slurm_run):
    project = slurm_run["project"]
    table = pd.read_csv(project / "results/eval.csv")
    assert len(table) > 0 and set(table["student"]) == {"smollm2-135m", "t5-tiny", "teacher"}

    # every job was an sbatch job: the plugin writes one log per SLURM job, by rule or group
    logs = project / ".snakemake/slurm_logs"
    by_dir = {d.name: sorted(d.rglob("*.log")) for d in logs.iterdir() if d.is_dir()}
    for rule in ["student_base", "filter", "dataset", "diversity", "students", "export", "eval", "eval_teacher",
                 "judge_grade", "eval_table"]:
        assert by_dir.get(f"rule_{rule}"), f"no SLURM log for rule {rule}: {sorted(by_dir)}"
    # the teacher's shards (2 instruction shards, 2 response shards) ran as one group job each
    for group in ["instructions", "responses"]:
        dirs = [name for name in by_dir if name.startswith(f"group_{group}")]
        assert len(dirs) == 1 and len(by_dir[dirs[0]]) == 1, (group, sorted(by_dir))
    stderr = slurm_run["proc"].stderr
    assert "submitted with SLURM jobid" in stderr
    assert "Falling back to 'sacct'" not in stderr  # squeue is the status source: no slurmdbd
    # squeue showed this run's jobs finishing
    assert any(job["state"] == "COMPLETED" for job in slurm_run["seen"])


def test_cancelled_job_is_resubmitted(slurm_run):
    cancelled = slurm_run["cancelled"]
    assert cancelled, f"no {CANCEL_RULE} job ({CANCEL_WILDCARDS}) was seen RUNNING in squeue"
    project = slurm_run["project"]
    stderr = slurm_run["proc"].stderr
    # snakemake saw the cancellation through squeue ...
    assert f"SLURM-job '{cancelled}' failed" in stderr and "CANCELLED" in stderr, stderr[-5000:]
    assert "Trying to restart job" in stderr
    # ... and submitted the same job again as a new SLURM job, which completed the run
    job_logs = project / ".snakemake/slurm_logs" / f"rule_{CANCEL_RULE}" / CANCEL_WILDCARDS
    attempts = sorted(int(p.stem) for p in job_logs.glob("*.log"))
    assert len(attempts) == 2 and attempts[0] == int(cancelled), attempts
    assert "CANCELLED" in (job_logs / f"{cancelled}.log").read_text()
    assert (project / f"results/{CANCEL_RULE}/{CANCEL_WILDCARDS}/metrics.json").exists()
    assert (project / "results/eval.csv").stat().st_size > 0
