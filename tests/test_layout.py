"""The package's shape (issue 15): no import circle among herd's modules, none over 400 lines,
and ruff clean under the rules pyproject.toml selects."""
import subprocess
import sys
from pathlib import Path

from herd import code_closure

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every herd module by dotted name relative to herd ("teacher.base"; a package by its name)."""
    found = {}
    for path in sorted((ROOT / "src/herd").rglob("*.py")):
        parts = path.relative_to(ROOT / "src/herd").with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_cycle_finder_finds_a_circle_and_only_that():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_herd_modules():
    """Imports written in the code, lazy ones included; a module run by name (`python -m`) is a
    child process, not an import."""
    graph = {name: code_closure.imported_modules(path, named=False) - {name} for name, path in modules().items()}
    assert import_cycles(graph) == []


def test_no_module_over_400_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_ruff_finds_nothing():
    """ruff (a test dependency) with the project's own settings ([tool.ruff] in pyproject.toml)."""
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
