from pathlib import Path

import pytest
import yaml

from herd.config import ConfigError, load, validate

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_is_valid_and_gets_defaults():
    cfg = load(ROOT / "config.yaml")
    assert cfg["filter"]["rouge_threshold"] == 0.7
    assert cfg["instructions"]["max_failed_fraction"] == 0.1  # from the schema
    assert cfg["students"][0]["grad_accum"] == 1


def test_tiny_overlay_is_valid():
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    base.update(yaml.safe_load((ROOT / "config/tiny.yaml").read_text()))
    validate(base)


def test_misspelled_key_is_named():
    with pytest.raises(ConfigError, match=r"students\[0\]: .*'lerning_rate' was unexpected"):
        validate({"students": [{"name": "s", "from": {"hub": "gpt2"}, "lerning_rate": 1e-4}]})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"responses.shards: 'two' is not of type 'integer'"):
        validate({"responses": {"shards": "two"}})


def test_student_source_needs_exactly_one_kind():
    with pytest.raises(ConfigError, match=r"students\[0\].from"):
        validate({"students": [{"name": "s", "from": {"hub": "gpt2", "gguf": "x"}}]})


def test_duplicate_student_names():
    s = {"name": "a", "from": {"hub": "gpt2"}}
    with pytest.raises(ConfigError, match="duplicate"):
        validate({"students": [s, dict(s)]})


def test_command_line_strings_become_numbers_where_the_schema_says():
    cfg = validate({"teacher": {"max_budget_usd": "5", "batch": "true"}, "eval": {"limit": "null"}})
    assert cfg["teacher"]["max_budget_usd"] == 5 and cfg["teacher"]["batch"] is True
    assert cfg["eval"]["limit"] is None
    with pytest.raises(ConfigError, match=r"responses.shards: 'two' is not of type 'integer'"):
        validate({"responses": {"shards": "two"}})


def test_key_order_of_the_yaml_does_not_matter():
    """Snakemake's params comparison sees key order: the validated config has one order."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    shuffled = dict(base, students=[dict(reversed(list(s.items()))) for s in base["students"]],
                    teacher=dict(reversed(list(base["teacher"].items()))))
    a, b = validate(base), validate(shuffled)
    assert a == b
    assert list(a["teacher"]) == list(b["teacher"]) == sorted(a["teacher"])
    assert list(a["students"][0]) == list(b["students"][0])
    assert list(a) == sorted(a)


def test_the_schema_and_the_quantizer_default_to_one_accuracy_level():
    """export.int8.accuracy_level's default is written twice: in the schema (users read it there)
    and as quantize.ACCURACY_LEVEL (the code's defaults); they must not drift apart."""
    from herd import quantize

    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    int8 = schema["properties"]["export"]["properties"]["int8"]["properties"]
    assert int8["accuracy_level"]["default"] == quantize.ACCURACY_LEVEL
    assert validate({})["export"]["int8"]["accuracy_level"] == quantize.ACCURACY_LEVEL
