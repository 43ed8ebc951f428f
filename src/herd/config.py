"""Configuration: validated against config/schema.yaml, defaults filled in.

An unknown key or an ill-typed value is an error that names the key, before
any job runs.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    pass


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


def validate(config: dict, schema_path: Path = SCHEMA, source: str = "config") -> dict:
    """Fill defaults into `config` in place and check it; raise ConfigError naming the key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _Validator(schema)
    _coerce_strings(config, validator)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_where(e)}: {e.message}" for e in errors]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines))
    names = [s["name"] for s in config["students"]]
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


def code_version(*modules: str) -> str:
    """A short hash of the source of herd modules, used as a rerun trigger."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(f"herd.{name}")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:12]
