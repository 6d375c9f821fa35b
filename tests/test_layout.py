"""The README's "Layout" tree is the package as it is: one line per module with the first line of
its docstring, so the map cannot drift from the code. Print the tree with
``python tests/test_layout.py`` after adding a module."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- layout:start -->", "<!-- layout:end -->"


def summary(path: Path) -> str:
    """The docstring's first sentence (its first paragraph up to the first full stop)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    end = first.find(". ")
    return first[: end + 1] if end >= 0 else first


def tree(folder: Path = ROOT / "framework", depth: int = 0) -> list[str]:
    lines = [] if depth else [f"{'framework/':<28}{summary(folder / '__init__.py')}"]
    entries = sorted((p for p in folder.iterdir() if p.name != "__pycache__"),
                     key=lambda p: (p.is_dir(), p.name))
    for path in entries:
        pad = "  " * (depth + 1)
        if path.is_dir():
            init = path / "__init__.py"
            lines.append(f"{pad + path.name + '/':<28}{summary(init) if init.exists() else ''}")
            lines += tree(path, depth + 1)
        elif path.suffix == ".py" and path.name != "__init__.py":
            lines.append(f"{pad + path.name:<28}{summary(path)}")
    return [line.rstrip() for line in lines]


def readme_tree() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(START) + r"\n```text\n(.*?)\n```\n" + re.escape(END), text, re.S)
    assert match, f"README.md has no layout block between {START} and {END}"
    return match.group(1).splitlines()


def test_every_module_says_what_it_does_in_one_line():
    missing = [str(p.relative_to(ROOT)) for p in (ROOT / "framework").rglob("*.py")
               if "__pycache__" not in p.parts and not summary(p)]
    assert not missing, f"modules without a docstring: {missing}"


def test_the_readme_layout_is_the_package():
    assert readme_tree() == tree(), "README.md's layout is stale: paste python tests/test_layout.py"


if __name__ == "__main__":
    sys.stdout.write("\n".join(tree()) + "\n")
