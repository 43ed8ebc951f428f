"""Hostile or mistaken configuration is refused before any job, naming the key: names that
would leave their folder, a key pasted where its variable's name belongs, a misspelt benchmark."""
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, copy_project, snakemake

from herd import benchmarks
from herd.config import SAFE_NAME, ConfigError, validate

BAD_NAMES = ["..", ".", "a/b", ".hidden", "", "x" * 65, "a\x00b", "a\nb", "ok\n", "-rf", "a..b", "a b", "../results"]
GOOD_NAMES = ["lamini-gpt-1.5b", "t5_mini", "a", "x" * 64, "_private", "0x.1"]
SECRET = "sk-herd-hostile-4f9c1e2b7a60d3e58c1f"


def student(name):
    return {"name": name, "from": {"hub": "gpt2"}}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_student_name_is_refused_naming_the_key(name):
    cfg = {"students": [student("s0"), student("s1"), student("s2"), student(name)]}
    with pytest.raises(ConfigError, match=r"students\[3\]\.name: .*not a safe name"):
        validate(cfg)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_seed_source_is_refused_naming_the_key(name):
    seeds = {"path": "config/data/seed_tasks.jsonl"}
    with pytest.raises(ConfigError, match=r"seed_tasks\[1\]\.source: .*not a safe name"):
        validate({"seed_tasks": [seeds, dict(seeds, source=name)]})


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_safe_names_pass(name):
    cfg = validate({"students": [student(name)], "seed_tasks": [{"path": "x.jsonl", "source": name}]})
    assert cfg["students"][0]["name"] == name


def test_a_student_cannot_take_the_teachers_name_in_the_evaluation():
    with pytest.raises(ConfigError, match=r"students\[1\]\.name: 'teacher' is the teacher's name"):
        validate({"students": [student("s0"), student("teacher")]})


def test_a_long_name_is_shown_cut():
    with pytest.raises(ConfigError) as err:
        validate({"students": [student("y" * 5000)]})
    assert "5000 characters" in str(err.value) and len(str(err.value)) < 1000


def test_schema_holds_the_same_pattern():
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    props = schema["properties"]
    assert props["students"]["items"]["properties"]["name"]["pattern"] == f"^{SAFE_NAME}$"
    assert props["seed_tasks"]["items"]["properties"]["source"]["pattern"] == f"^{SAFE_NAME}$"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("dry", [True, False])
def test_student_named_dotdot_leaves_results_alone(tmp_path, dry):
    project = copy_project(tmp_path)
    marker = project / "results" / "marker.txt"
    marker.parent.mkdir()
    marker.write_text("keep me")
    cfg = write_config(tmp_path, "students:\n  - {name: smollm2-135m, from: {gguf: smollm2-135m-instruct}}\n"
                                 "  - {name: '..', from: {hub: gpt2}}\n")
    proc = snakemake(project, *(["-n"] if dry else []), "results/eval.csv", "--configfile", str(cfg))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr  # Snakemake prints its errors to stdout
    assert "students[1].name" in out and "not a safe name" in out
    assert marker.read_text() == "keep me"
    assert sorted(p.name for p in (project / "results").iterdir()) == ["marker.txt"]
    assert not (project / "logs").exists()


@pytest.mark.parametrize("target", ["results/student_base/.hidden", "results/export/a..b/parity.json",
                                    "results/eval/-x/pytorch.csv"])
def test_an_unsafe_wildcard_matches_no_rule(tmp_path, target):
    """The wildcard constraints: asked for directly, an unsafe student folder is no rule's output.
    (Snakemake itself folds "results/student_base/.." into "results" before matching.)"""
    project = copy_project(tmp_path)
    proc = snakemake(project, "-n", target)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"No rule to produce {target}" in out and "InputFunctionException" not in out


# ---------------------------------------------------------------- a key pasted into api_key_env

@pytest.mark.parametrize("value", [SECRET, "hf_" + "Ab1" * 12, "Zq8" * 14, "OPENAI KEY", "sk_live_abc", 123456789,
                                   "gsk_" + "a1" * 20, "fw_" + "B2" * 12, "0123456789abcdef" * 2,
                                   "ABCDEF0123456789ABCDEF0123"])
def test_key_in_api_key_env_is_refused_without_echo(value):
    cfg = {"teacher": {"backend": "openai", "api_key_env": value}}
    with pytest.raises(ConfigError, match=r"teacher\.api_key_env must be the NAME") as err:
        validate(cfg)
    assert str(value) not in str(err.value)
    assert cfg["teacher"]["api_key_env"] is None  # scrubbed: nothing that prints the config shows it


@pytest.mark.parametrize("value", ["OPENAI_API_KEY", "HERD_TEST_KEY", "GROQ_API_KEY_2", "_KEY", None, ""])
def test_variable_names_pass(value):
    assert validate({"teacher": {"backend": "openai", "api_key_env": value}})["teacher"]["api_key_env"] == value


@pytest.mark.parametrize("dry", [True, False])
def test_pasted_key_never_reaches_terminal_or_snakemake_files(tmp_path, dry):
    project = copy_project(tmp_path)
    proc = snakemake(project, *(["-n"] if dry else []), "results/plan/plan.txt",
                     "--config", f"teacher={{backend: openai, model: gpt-4o-mini, api_key_env: {SECRET}}}")
    assert proc.returncode != 0
    assert "teacher.api_key_env must be the NAME" in proc.stdout + proc.stderr
    assert SECRET[3:] not in proc.stdout + proc.stderr
    written = [p for p in project.rglob("*") if p.is_file()]
    if not dry:  # a real run writes Snakemake's log (.snakemake/log), which echoed the error
        assert any("log" in p.parts and ".snakemake" in p.parts for p in written)
    assert [p for p in written if SECRET[3:].encode() in p.read_bytes()] == []


# ---------------------------------------------------------------- eval.benchmarks

def test_misspelt_benchmark_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"eval\.benchmarks\[1\]: 'arc_easyy'.*did you mean arc_easy") as err:
        validate({"eval": {"benchmarks": ["piqa", "arc_easyy"]}})
    assert "boolq" in str(err.value)  # the tasks with local data are listed


def test_known_tasks_agree_with_lm_eval():
    """What the config accepts is what the eval job's `builtin_config` finds, and the reverse."""
    known = benchmarks.known_tasks()
    assert known is not None and len(known) > 1000
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["eval"]["benchmarks"]
    assert len(paper) == 15 and set(paper) <= known and set(benchmarks.TASKS) <= known
    for task in ("hellaswag", "mnli_mismatch", "wsc273"):  # read from the Hub by the eval job
        assert benchmarks.builtin_config(task)["task"] == task
    with pytest.raises(KeyError):
        benchmarks.builtin_config("arc_easyy")


def test_the_config_gate_reads_only_the_task_files_named_like_the_tasks(monkeypatch):
    """The gate runs on every Snakemake call: the files whose folder or name shares a word with a
    configured task (glue/mnli/mismatch.yaml) are read, and all of them only to name a missing one."""
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["eval"]["benchmarks"]
    read = []
    real = benchmarks._tasks_in
    monkeypatch.setattr(benchmarks, "_tasks_in", lambda path: read.append(path) or real(path))
    assert benchmarks.unknown_tasks(paper) == [] and 0 < len(read) < 1000
    assert benchmarks.unknown_tasks([]) == []
    assert benchmarks.unknown_tasks(["piqa", "wic_", "arc_easyy"]) == ["wic_", "arc_easyy"]


def test_misspelt_benchmark_stops_the_dry_run(tmp_path):
    project = copy_project(tmp_path)
    proc = snakemake(project, "-n", "results/eval.csv", "--config", "eval={benchmarks: [arc_easy, arc_easyy]}")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "eval.benchmarks[1]" in out and "did you mean arc_easy" in out
