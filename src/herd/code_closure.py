"""Rerun triggers derived from the code.

A rule's `code` param is a hash of its script and of every herd module the script can
reach through imports: module-level and lazy ones inside functions alike, and modules
named in a string ("herd.teacher.llamacpp_probe", run as `python -m`), found by reading the source
with `ast` (nothing is imported). Adding an import therefore adds a
module to the trigger; no list is kept by hand.

Snakemake evaluates every rule's trigger each time it starts (on a cluster, once per job
too), so what each file imports is kept in a small cache keyed by the file's text, and
only a new or edited file is parsed (bench/dag.py).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from herd.io import write_text

PACKAGE = "herd"
PACKAGE_DIR = Path(__file__).resolve().parent
MODULE_NAME = re.compile(r"^herd(\.[A-Za-z_]\w*)+$")
SCAN_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "herd" / "import-scan.json"
SCAN_CACHE_ENTRIES = 4000
# What an entry depends on besides the file's text: this scanner's own code and Python's grammar.
_SCANNER = hashlib.sha256(Path(__file__).read_bytes() + repr(sys.version_info[:2]).encode()).hexdigest()[:16]


def module_file(name: str) -> Path | None:
    """The source file of herd module `name` ("teacher", "x.y"; "" is the package), or None."""
    return _module_file(PACKAGE_DIR, name)


@functools.cache
def _module_file(package_dir: Path, name: str) -> Path | None:
    base = package_dir.joinpath(*name.split(".")) if name else package_dir
    for path in (base.with_suffix(".py") if name else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _package_of(path: Path) -> str | None:
    """The dotted herd package a file lies in ("" for herd itself), or None outside herd."""
    try:
        parts = path.resolve().parent.relative_to(PACKAGE_DIR).parts
    except ValueError:
        return None
    return ".".join(parts)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def imported_modules(path: Path, named: bool = True) -> set[str]:
    """Names (relative to herd) of the herd modules that the file at `path` imports anywhere;
    with `named`, also those it names in a string (run as `python -m`)."""
    source = Path(path).read_text(encoding="utf-8")
    here = _package_of(Path(path))
    key = hashlib.sha256(f"{_SCANNER}\0{here}\0{named}\0{source}".encode()).hexdigest()
    stored = _scan_cache()
    names = stored.pop(key, None)  # put back last: pruning drops the least recently used
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        stored[key] = names
    else:
        names = stored[key] = sorted(_imports_in(source, here, named, str(path)))
        _unsaved.add(key)
    return {name for name in names if module_file(name) is not None}


_stored: dict[str, list[str]] | None = None
_unsaved: set[str] = set()


def _scan_cache() -> dict[str, list[str]]:
    """The import-scan cache, read once per process; empty when missing or unreadable."""
    global _stored
    if _stored is None:
        try:
            _stored = json.loads(SCAN_CACHE.read_text(encoding="utf-8"))
            if not isinstance(_stored, dict):
                raise ValueError
        except (OSError, ValueError):
            _stored = {}
    return _stored


def _save_scan_cache() -> None:
    """Write new entries (atomically: concurrent jobs may do the same); a cache that cannot be
    written only costs the parse next time."""
    if not _unsaved:
        return
    keep = dict(list(_scan_cache().items())[-SCAN_CACHE_ENTRIES:])  # in use order: not write_json's sorted keys
    try:
        write_text(SCAN_CACHE, json.dumps(keep))
    except OSError:
        return
    _unsaved.clear()


def _imports_in(source: str, here: str | None, named: bool, filename: str) -> frozenset[str]:
    tree = ast.parse(source, filename)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name[len(PACKAGE) + 1:])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only meaningful inside the package
                if here is None:
                    continue
                anchor = here.split(".") if here else []
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = _join(*anchor, node.module or "")
            elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                base = node.module[len(PACKAGE) + 1:]
            else:
                continue
            found.add(base)
            # `from herd import teacher`: the name may be a module itself
            found.update(_join(base, alias.name) for alias in node.names)
        elif named and isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            found.add(node.value[len(PACKAGE) + 1:])  # run by name: `python -m herd.x`, import_module("herd.x")
    return frozenset(found)


def _parents(name: str) -> set[str]:
    """Importing herd.a.b runs herd/__init__ and herd/a/__init__ too."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(len(parts))}


@functools.cache
def closure(path: Path) -> frozenset[str]:
    """Every herd module reachable from the file at `path` through imports (the package included)."""
    seen: set[str] = set()
    todo = list(imported_modules(path))
    while todo:
        name = todo.pop()
        source = module_file(name)
        if name in seen or source is None:  # herd itself has no __init__ (a namespace package)
            continue
        seen.add(name)
        todo.extend(m for m in imported_modules(source) | _parents(name) if m not in seen)
    _save_scan_cache()
    return frozenset(seen)


def script_version(script: str | Path) -> str:
    """A short hash of `script` and of the source of every herd module it reaches."""
    script = Path(script).resolve()
    digest = hashlib.sha256(script.read_bytes())
    for name in sorted(closure(script)):
        digest.update(f"\0{name}\0".encode())
        digest.update(module_file(name).read_bytes())
    return digest.hexdigest()[:12]
