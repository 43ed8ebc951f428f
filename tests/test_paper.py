"""config/paper.yaml through Snakemake, offline: the whole paper-scale DAG in a dry run, and
the plan it prints (teacher dollars, students' GPU-hours). No job needs the network."""
import re

import pytest
from conftest import SHARED, copy_project, snakemake

pytestmark = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present (Self-Instruct seeds)")

PAPER = ("--configfile", "config/paper.yaml")
ENV = {"OPENAI_API_KEY": "dummy"}  # never used: a dry run and the plan send nothing


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("paper"))


def test_paper_dry_run_lists_the_whole_dag(project):
    proc = snakemake(project, "-n", "results/eval.csv", *PAPER, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.MULTILINE))
    assert int(jobs["total"]) >= 1000
    assert int(jobs["instructions"]) == 1200 and int(jobs["responses"]) == 1000
    assert int(jobs["students"]) == 15 and jobs["download_topics"] == "1"
    # Hub datasets are no rule inputs; the Wikipedia dump is downloaded by a rule
    assert "Muennighoff/P3" not in proc.stdout and "data/enwiki-latest-category.sql.gz" in proc.stdout
    # the students' GPU request comes from their config
    blocks = [b for b in proc.stdout.split("\nrule ") if b.startswith("students:")]
    assert len(blocks) == 15 and all(re.search(r"resources: .*\bgpu=1\b", b) for b in blocks)
    # a paid teacher: the plan is printed before any job, under the budget
    assert "gpt-3.5-turbo (batch API)" in proc.stderr and "GPU-hours" in proc.stderr


def test_paper_plan_target(project):
    proc = snakemake(project, "results/plan/plan.txt", *PAPER, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (project / "results/plan/plan.txt").read_text()
    assert re.search(r"dataset: 2,5\d\d,\d{3} rows", text)
    assert "lamini-cerebras-1.3b" in text
    total = float(re.search(r"^total\s+([\d,.]+)$", text, re.MULTILINE).group(1).replace(",", ""))
    assert 100 < total < 10_000  # GPU-hours of the 15 students
