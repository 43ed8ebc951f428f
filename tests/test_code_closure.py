"""Rerun triggers derived from the code (herd.code_closure): every herd module a script reaches
through imports, lazy ones included, is part of its rule's `code` param."""
import shutil
from pathlib import Path

import pytest

from herd import code_closure

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of src/herd that the closure reads instead of the real one."""
    copy = tmp_path / "herd"
    shutil.copytree(ROOT / "src/herd", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code_closure, "PACKAGE_DIR", copy)
    code_closure.closure.cache_clear()
    yield copy
    code_closure.closure.cache_clear()


def test_every_import_form_is_followed_lazy_ones_included(package, tmp_path):
    (package / "leaf.py").write_text("X = 1\n")
    (package / "middle.py").write_text("def f():\n    from herd.leaf import X\n    return X\n")
    (package / "other.py").write_text("import herd.leaf\nCMD = ['python', '-m', 'herd.child']\n")
    (package / "child.py").write_text("")
    script = tmp_path / "script.py"
    script.write_text("import json\nfrom herd import middle, logs\n\n\ndef g():\n    import herd.other\n")
    reached = code_closure.closure(script)
    assert {"middle", "leaf", "other", "logs", "child"} <= reached
    assert "json" not in reached and "" not in reached
    assert code_closure.imported_modules(package / "middle.py") == {"leaf"}


def test_a_change_deep_in_the_closure_changes_the_version_and_others_do_not(package, tmp_path):
    (package / "leaf.py").write_text("X = 1\n")
    (package / "middle.py").write_text("from herd.leaf import X\n")
    (package / "unrelated.py").write_text("Y = 2\n")
    script = tmp_path / "script.py"
    script.write_text("from herd import middle\n")
    before = code_closure.script_version(script)
    (package / "unrelated.py").write_text("Y = 3\n")
    assert code_closure.script_version(script) == before
    (package / "leaf.py").write_text("X = 2\n")
    assert code_closure.script_version(script) != before
    script.write_text("from herd import middle  # the script itself counts too\n")
    assert code_closure.script_version(script) != before


def test_real_scripts_reach_the_modules_that_once_were_forgotten():
    """rng (request seeds, the split) and io were in no rule's hand-written list."""
    dataset = code_closure.closure(ROOT / "scripts/dataset.py")
    assert {"dataset", "rng", "io"} <= dataset
    responses = code_closure.closure(ROOT / "scripts/responses.py")
    assert {"responses", "teacher", "teacher.llamacpp_parallel", "native", "rng", "io"} <= responses
