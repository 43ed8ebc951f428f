"""Rerun triggers derived from the code (herd.code_closure): every herd module a script reaches
through imports, lazy ones included, is part of its rule's `code` param."""
import json
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
    monkeypatch.setattr(code_closure, "SCAN_CACHE", tmp_path / "cache/import-scan.json")
    monkeypatch.setattr(code_closure, "_stored", None)
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


def test_the_import_scan_is_kept_between_runs_and_an_edited_file_is_read_again(package, tmp_path, monkeypatch):
    (package / "leaf.py").write_text("X = 1\n")
    (package / "middle.py").write_text("from herd.leaf import X\n")
    script = tmp_path / "script.py"
    script.write_text("from herd import middle\n")
    parsed = []
    real_scan = code_closure._imports_in

    def counting_scan(source, *args):
        parsed.append(source)
        return real_scan(source, *args)

    monkeypatch.setattr(code_closure, "_imports_in", counting_scan)
    first = code_closure.closure(script)
    assert {"middle", "leaf"} <= first and len(parsed) >= 3 and code_closure.SCAN_CACHE.is_file()

    def next_run():  # what a new Snakemake process starts from
        monkeypatch.setattr(code_closure, "_stored", None)
        code_closure.closure.cache_clear()
        parsed.clear()
        return code_closure.closure(script)

    assert next_run() == first and parsed == []  # nothing parsed again
    edited = "from herd.leaf import X\nfrom herd import logs\n"
    (package / "middle.py").write_text(edited)
    assert next_run() == first | {"logs"}
    assert parsed == [edited, (package / "logs.py").read_text()]  # the edited file and the one it now reaches


def test_a_broken_or_unwritable_scan_cache_only_costs_the_parse(package, tmp_path, monkeypatch):
    (package / "leaf.py").write_text("X = 1\n")
    script = tmp_path / "script.py"
    script.write_text("import herd.leaf\n")
    code_closure.SCAN_CACHE.parent.mkdir(parents=True)
    code_closure.SCAN_CACHE.write_text('{"not json')
    assert "leaf" in code_closure.closure(script)
    assert "leaf" in code_closure.SCAN_CACHE.read_text()  # rewritten whole
    wrong = {key: [1, 2] for key in json.loads(code_closure.SCAN_CACHE.read_text())}  # valid JSON, wrong shape
    code_closure.SCAN_CACHE.write_text(json.dumps(wrong))
    monkeypatch.setattr(code_closure, "_stored", None)
    code_closure.closure.cache_clear()
    assert "leaf" in code_closure.closure(script)
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setattr(code_closure, "SCAN_CACHE", blocked / "import-scan.json")
    monkeypatch.setattr(code_closure, "_stored", None)
    code_closure.closure.cache_clear()
    assert "leaf" in code_closure.closure(script)
    assert not list(tmp_path.glob("**/.import-scan.json.*.tmp"))
