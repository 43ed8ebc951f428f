"""Reproducibility: the data artifacts of two clean runs are byte-identical, and a
change to one student's settings reruns only that student's jobs.

Each run happens in its own copy of the project, with an empty results/ and an
empty teacher cache, so the second run really asks the teacher again.
"""
import hashlib
import re

import pytest
import yaml
from conftest import SHARED, copy_project, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present"),
]

DATA_TARGETS = ["results/dataset/train.parquet", "results/dataset/validation.parquet"]
# every file of these stages, in results/ (instructions, filtered, responses, dataset)
DATA_DIRS = ["instructions", "filter", "seed_rows", "responses", "dataset"]
# the per-shard stats hold timings (seconds, tokens/s), which are not data
NOT_DATA = re.compile(r"\.stats\.json$|/stats\.json$")


def data_digests(project) -> dict[str, str]:
    out = {}
    for stage in DATA_DIRS:
        for path in sorted((project / "results" / stage).rglob("*")):
            rel = str(path.relative_to(project))
            if path.is_file() and not NOT_DATA.search(rel):
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def clean_data_run(base):
    project = copy_project(base)
    proc = snakemake(project, *DATA_TARGETS, "--configfile", "config/tiny.yaml")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return project


def test_two_clean_runs_give_byte_identical_data(tiny_run, tmp_path_factory):
    """The first clean run is test_workflow's tiny run; the second builds the dataset again."""
    second = clean_data_run(tmp_path_factory.mktemp("run2"))
    a, b = data_digests(tiny_run), data_digests(second)
    stages = {rel.split("/")[1] for rel in a}
    assert stages == set(DATA_DIRS), stages
    assert any(rel.endswith(".parquet") for rel in a)
    assert a.keys() == b.keys()
    differ = [rel for rel in a if a[rel] != b[rel]]
    assert not differ, f"differ between two clean runs: {differ}"
    print(f"\n{len(a)} data files byte-identical across two clean runs:")
    for rel, digest in a.items():
        print(f"  {digest[:16]}  {rel}")


def planned_jobs(project, *args) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would run."""
    proc = snakemake(project, "results/eval.csv", "--configfile", "config/tiny.yaml", *args, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs, rule = [], None
    for line in (proc.stdout + proc.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line.strip()):
            rule = m.group(1)
            jobs.append((rule, ""))
        elif rule and (m := re.match(r"^wildcards: (.*)$", line.strip())):
            jobs[-1] = (rule, m.group(1))
    return jobs


def test_one_learning_rate_reruns_only_that_student(tiny_run, tmp_path):
    """Uses the finished tiny run of test_workflow; changes t5-tiny's learning rate."""
    tiny = yaml.safe_load((tiny_run / "config/tiny.yaml").read_text())
    students = tiny["students"]
    t5 = next(s for s in students if s["name"] == "t5-tiny")
    t5["learning_rate"] = t5["learning_rate"] * 2
    overlay = tmp_path / "lr.yaml"
    overlay.write_text(yaml.safe_dump({"students": students}))

    assert planned_jobs(tiny_run) == []  # up to date before the change
    jobs = planned_jobs(tiny_run, str(overlay))
    print("\njobs after doubling t5-tiny's learning rate:")
    for rule, wildcards in jobs:
        print(f"  {rule:12s} {wildcards}")
    per_student = [(rule, w) for rule, w in jobs if w]
    assert per_student and all("student=t5-tiny" in w for _, w in per_student), jobs
    # its judge answers are new, so the judge grades again (the other answers' grades come from the cache);
    # its released folder and sample answers are rebuilt, and the samples page that shows them
    assert {rule for rule, _ in jobs} == {"students", "export", "eval", "eval_table", "judge_answers",
                                          "judge_grade", "judge_summary", "release", "samples",
                                          "samples_table"}, jobs
    assert ("students", "student=t5-tiny") in jobs
