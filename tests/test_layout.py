"""Who may import whom: the product imports no test code, the benchmarks import nothing from
tests/ (what both need, the Drive server, lives in scripts/fakedrive/), and a test module takes
what it shares from tests/helpers.py and tests/fakes/, never from conftest.py or another test
module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def top_levels(folder: str) -> dict[str, set[str]]:
    # scripts.fakedrive counts as its own side: "scripts.fakedrive" and "fakedrive" (as a
    # benchmark run from scripts/ imports it) are the same package
    def side(module: str) -> str:
        return "fakedrive" if module.split(".")[:2] == ["scripts", "fakedrive"] \
            else module.split(".", maxsplit=1)[0]
    return {str(p.relative_to(REPO)): {side(m) for m in imported_modules(p)}
            for p in sorted((REPO / folder).rglob("*.py"))}


@pytest.mark.parametrize("folder,forbidden", [
    ("watcher", {"tests", "fakedrive"}),
    ("scripts", {"tests"}),
    ("scripts/fakedrive", {"tests", "watcher"}),
])
def test_imports_stay_on_their_side(folder: str, forbidden: set[str]) -> None:
    wrong = {path: sorted(mods & forbidden) for path, mods in top_levels(folder).items()
             if mods & forbidden}
    assert wrong == {}


def test_tests_share_through_helpers_and_fakes_only() -> None:
    wrong = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        shared = {m for m in imported_modules(path)
                  if m == "tests.conftest" or m.startswith("tests.test_")}
        if shared:
            wrong[str(path.relative_to(REPO))] = sorted(shared)
    assert wrong == {}
