"""Configuration: validated against config/schema.yaml, defaults filled in.

An unknown key or an ill-typed value is an error that names the key, before
any job runs.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from herd.errors import ConfigError  # noqa: F401 (raised here, imported from here by callers)

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


# A name that becomes a path part (a student's folder, a seed source's ids): one plain path
# component, never ".", "..", hidden or empty. The schema holds the same pattern, anchored;
# the Snakemake wildcards use it unanchored.
SAFE_NAME = r"(?![A-Za-z0-9._-]*\.\.)[A-Za-z0-9_][A-Za-z0-9._-]{0,63}"
SAFE_NAME_RULE = ("letters, digits, '.', '_' and '-', 1 to 64 characters, not starting with '.' or '-', "
                  "without '..'")
# Folders that hold one entry per student (rules/*.smk): a student's name must stay inside each.
STUDENT_DIRS = tuple(f"{top}/{stage}" for top in ("results", "logs", "benchmarks")
                     for stage in ("student_base", "students", "export", "eval"))
# an environment variable's name as people write them for keys: upper case, digits, underscores
# (a lower-case value is far more often a pasted key, e.g. 32 hex digits, than a variable)
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Prefixes of common API keys and tokens (OpenAI, Hugging Face, GitHub, Slack, AWS, Anthropic,
# Groq, Fireworks, Replicate, Google).
KEY_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-", "AKIA", "gsk_", "fw_",
                "r8_", "AIza")


def _with_defaults(cls):
    check_properties = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
                elif "$ref" in sub and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties})


_Validator = _with_defaults(Draft202012Validator)


def _where(error) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _coerce_strings(config: dict, validator) -> None:
    """Values given on the command line (`--config a='{b: 5}'`) reach us as strings:
    read a string as YAML where the schema wants a number or a boolean."""
    for error in validator.iter_errors(config):
        if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
            continue
        try:
            value = yaml.safe_load(error.instance)
        except yaml.YAMLError:
            continue
        if isinstance(value, (int, float, bool)) or value is None:
            *parents, last = error.absolute_path
            target = config
            for part in parents:
                target = target[part]
            target[last] = value


def _show(name) -> str:
    """A name for an error message: repr (newlines and NULs visible), cut when long."""
    text = repr(name)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(name)} characters)"


def _message(error) -> str:
    if error.validator == "pattern" and error.validator_value == f"^{SAFE_NAME}$":
        return f"{_show(error.instance)} is not a safe name ({SAFE_NAME_RULE})"
    return error.message


def looks_like_key(value: str) -> bool:
    """Whether a string looks like a secret rather than an environment variable's name."""
    if value.startswith(KEY_PREFIXES):
        return True
    # a long token of mixed-case letters and digits without an underscore: variable names are
    # words joined by underscores, keys are random characters
    return len(value) >= 24 and "_" not in value and any(c.isdigit() for c in value)


def _check_api_key_env(config: dict, source: str) -> None:
    """teacher.api_key_env must name a variable. A key pasted there is refused without being
    echoed (the schema's errors quote values) and removed from the config, so that nothing
    that prints or stores the config later shows it."""
    teacher = config.get("teacher")
    if isinstance(teacher, dict) and teacher.get("api_key_env") in ("null", "None", "~"):
        teacher["api_key_env"] = None  # YAML's null, as `--config teacher='{...}'` can deliver it
    if not isinstance(teacher, dict) or teacher.get("api_key_env") in (None, ""):  # "": no key
        return
    value = teacher["api_key_env"]
    if isinstance(value, str) and ENV_NAME.fullmatch(value) and not looks_like_key(value):
        return
    teacher["api_key_env"] = None
    length = f"{len(value)} characters" if isinstance(value, str) else f"a {type(value).__name__}"
    raise ConfigError(
        f"{source}: teacher.api_key_env must be the NAME of an environment variable, in upper case (like "
        "OPENAI_API_KEY); "
        f"the value given ({length}, not shown) is no variable name or looks like a key. Put the key in "
        "the environment (export OPENAI_API_KEY=...) and the variable's name here")


def _check_name(name, key: str, source: str, stages: tuple[str, ...] = ()) -> None:
    """`name` is a safe path part, and each `stage/name` stays directly inside `stage`."""
    if not isinstance(name, str) or not re.fullmatch(SAFE_NAME, name):
        raise ConfigError(f"{source}: {key}: {_show(name)} is not a safe name ({SAFE_NAME_RULE})")
    for stage in stages:  # lexically: a user's own symlinked results folder is fine
        base = os.path.abspath(stage)
        target = os.path.abspath(os.path.join(stage, name))
        if os.path.dirname(target) != base:
            raise ConfigError(f"{source}: {key}: {_show(name)} would put files at {target}, outside {stage}/")


def _check_benchmarks(config: dict, source: str) -> None:
    """eval.benchmarks are lm-eval tasks: a misspelt one fails now, not after every student trained."""
    from herd import benchmarks

    tasks = config["eval"]["benchmarks"]
    unknown = benchmarks.unknown_tasks(tasks)
    if not unknown:  # None: lm-eval is not installed where Snakemake runs, and the eval jobs check
        return
    known = benchmarks.known_tasks()
    for i, task in enumerate(tasks):
        if task not in unknown:
            continue
        close = difflib.get_close_matches(task, sorted(known), n=3)
        raise ConfigError(
            f"{source}: eval.benchmarks[{i}]: {task!r} is no lm-evaluation-harness task "
            f"(lm-eval knows {len(known)})"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + f" herd reads local data (eval.benchmark_root) for {', '.join(sorted(benchmarks.TASKS))}; "
            "any other lm-eval task is read from the Hugging Face Hub")


def validate(config: dict, schema_path: Path = SCHEMA, source: str = "config") -> dict:
    """Fill defaults into `config` in place and check it; raise ConfigError naming the key."""
    _check_api_key_env(config, source)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _Validator(schema)
    _coerce_strings(config, validator)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_where(e)}: {_message(e)}" for e in errors]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines))
    # the schema's pattern lets a trailing newline through (Python's `$`): check whole names
    for i, s in enumerate(config["students"]):
        _check_name(s["name"], f"students[{i}].name", source, STUDENT_DIRS)
    for i, s in enumerate(config["seed_tasks"]):
        _check_name(s["source"], f"seed_tasks[{i}].source", source)
    _check_benchmarks(config, source)
    names = [s["name"] for s in config["students"]]
    if "teacher" in names:  # results/eval.csv and the judge name the teacher's own rows so
        raise ConfigError(f"{source}: students[{names.index('teacher')}].name: 'teacher' is the teacher's "
                          "name in the evaluation; choose another")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: students: duplicate names {dupes}")
    for s in config["students"]:
        tok = s["from"].get("scratch", {}).get("tokenizer")
        if tok in names and tok == s["name"]:
            raise ConfigError(f"{source}: students.{s['name']}.from.scratch.tokenizer names itself")
    # Snakemake compares a job's params with the last run's key order included: sort every
    # mapping, so that reordering keys in a YAML file (or an overlay) reruns nothing
    canonical = _sorted_keys(config)
    config.clear()
    config.update(canonical)
    return config


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def load(path: str | Path) -> dict:
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return validate(config, source=str(path))


def student(config: dict, name: str) -> dict:
    for s in config["students"]:
        if s["name"] == name:
            return s
    raise ConfigError(f"no student named {name!r} in config.students")

