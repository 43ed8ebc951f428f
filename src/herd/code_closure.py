"""Rerun triggers derived from the code.

A rule's `code` param is a hash of its script and of every herd module the script can
reach through imports: module-level and lazy ones inside functions alike, and modules
named in a string ("herd.teacher.llamacpp_probe", run as `python -m`), found by reading the source
with `ast` (nothing is imported). Adding an import therefore adds a
module to the trigger; no list is kept by hand.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from pathlib import Path

PACKAGE = "herd"
PACKAGE_DIR = Path(__file__).resolve().parent
MODULE_NAME = re.compile(r"^herd(\.[A-Za-z_]\w*)+$")


def module_file(name: str) -> Path | None:
    """The source file of herd module `name` ("teacher", "x.y"; "" is the package), or None."""
    base = PACKAGE_DIR.joinpath(*name.split(".")) if name else PACKAGE_DIR
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
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    here = _package_of(Path(path))
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
    return {name for name in found if module_file(name) is not None}


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
    return frozenset(seen)


def script_version(script: str | Path) -> str:
    """A short hash of `script` and of the source of every herd module it reaches."""
    script = Path(script).resolve()
    digest = hashlib.sha256(script.read_bytes())
    for name in sorted(closure(script)):
        digest.update(f"\0{name}\0".encode())
        digest.update(module_file(name).read_bytes())
    return digest.hexdigest()[:12]
