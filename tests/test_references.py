"""Docs and comments name only files and modules that exist.

Every ``*.md``, ``*.py`` and ``*.yaml`` file of the repository is read for

* paths ``framework/...`` (a ``.py`` file or a folder) and ``tests/....py``: the path must exist;
* a test file named on its own (``test_checkpoint.py``, ``test_app.py::test_x``): some file of that
  name must exist under ``tests/``; in the docs and in ``framework/``, any other file named on its
  own (``checkpoint.py``) must exist somewhere in the repository, or be an example file a doc
  declares with a ``# name.py:`` first line;
* dotted names ``framework.<package>.<module>``: the longest prefix that is a module or package
  must be followed by nothing or by a name that module defines or imports at its top level (a
  class, function, constant), so ``framework.nn.cell.course_normal`` passes and a moved module's
  old name fails.

A file moved or renamed without its mentions fails here with every stale line listed.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = (".md", ".py", ".yaml", ".yml")
SKIPPED = {".venv", ".git", "outputs", "multirun", "mlruns", "mlartifacts", "__pycache__",
           ".pytest_cache", ".ruff_cache", "node_modules", "build", "dist"}
# Files named as examples because they do not exist: a plugin file put where nothing loads it.
HYPOTHETICAL = {"framework/mine.py", "framework/nn/other.py"}

PATH = re.compile(r"(?<![\w./-])(?:framework/(?:\w+/)*(?:\w+\.py\b|\w+/)|tests/(?:\w+/)*\w+\.py\b)")
TEST_FILE = re.compile(r"(?<![\w./-])test_\w+\.py\b")
DOTTED = re.compile(r"(?<![\w./-])framework(?:\.\w+)+")
BARE = re.compile(r"(?<![\w./-])\w+\.py\b")
EXAMPLE = re.compile(r"^#\s*(\w+\.py):", re.M)  # a doc's example plugin file: "# leaky.py: ..."


def text_files() -> Iterator[Path]:
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)  # never walk into a venv
        for name in sorted(files):
            if name.endswith(SUFFIXES):
                yield Path(folder) / name


def module_file(dotted: str) -> Path | None:
    """The file defining module or package ``dotted`` (a folder for a namespace package)."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return base if base.is_dir() else None


@functools.cache
def top_level_names(path: Path) -> frozenset[str]:
    if path.is_dir():
        return frozenset(p.stem for p in path.iterdir())
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


@functools.cache
def known_test_files() -> frozenset[str]:
    return frozenset(p.name for p in (ROOT / "tests").rglob("test_*.py"))


@functools.cache
def known_file_names() -> frozenset[str]:
    """Every Python file name of the repository, and the example files the docs declare."""
    names = {p.name for p in text_files() if p.suffix == ".py"}
    for doc in (p for p in text_files() if p.suffix == ".md"):
        names.update(EXAMPLE.findall(doc.read_text(encoding="utf-8")))
    return frozenset(names)


def dotted_exists(ref: str) -> bool:
    parts = ref.split(".")
    for k in range(len(parts), 1, -1):
        found = module_file(".".join(parts[:k]))
        if found is not None:
            return k == len(parts) or parts[k] in top_level_names(found)
    return False


def stale(line: str, *, bare: bool = False) -> list[str]:
    """The references in ``line`` to files or modules that do not exist (``bare``: file names on
    their own too; tests write files of made-up names, so not there)."""
    out = [m.group(0) for m in PATH.finditer(line)
           if m.group(0) not in HYPOTHETICAL and not (ROOT / m.group(0)).exists()]
    out += [m.group(0) for m in TEST_FILE.finditer(line) if m.group(0) not in known_test_files()]
    out += [m.group(0) for m in DOTTED.finditer(line) if not dotted_exists(m.group(0))]
    if bare:
        out += [m.group(0) for m in BARE.finditer(line)
                if not m.group(0).startswith("test_") and m.group(0) not in known_file_names()]
    return out


def checks_bare_names(path: Path) -> bool:
    return path.suffix == ".md" or path.is_relative_to(ROOT / "framework")


def test_a_stale_reference_is_found():
    module = "framework.tracking.tracker"
    assert stale(f"see {module.replace('.', '/')}.py and {module}.MlflowTracker") == []
    old = "framework" + "/plots.py"  # assembled, so this file names no stale path itself
    moved = "framework" + ".tracking.sweep"
    assert stale(f"cites {old}, {moved}.PARENT_ENV and {module}.NoSuchThing") == [
        old, moved + ".PARENT_ENV", module + ".NoSuchThing"]
    missing = "test_" + "nowhere.py"
    assert stale(f"{missing}::test_x") == [missing]
    gone = "app" + ".py"
    assert stale(f"{gone} ends it", bare=True) == [gone] and stale(f"{gone} ends it") == []
    assert stale("trainer.py and leaky.py", bare=True) == []  # a module, a README example


def test_docs_and_comments_name_only_what_exists():
    found = [f"{path.relative_to(ROOT)}:{number}: {ref}"
             for path in text_files()
             for number, line in enumerate(path.read_text(encoding="utf-8",
                                                          errors="replace").splitlines(), 1)
             for ref in stale(line, bare=checks_bare_names(path))]
    assert not found, "references to files or modules that do not exist:\n" + "\n".join(found)
