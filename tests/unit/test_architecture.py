"""The direction of imports the layout promises: api -> ledger, jenius; ledger never imports api or
jenius; jenius never imports ledger or api. Parsed with ast, so a forbidden edge anywhere fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "ledger": {"api", "jenius"},
    "jenius": {"api", "ledger"},
    "migrations": {"api", "jenius", "ledger"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_inwards(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found in {package}"
    offenders = {str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package]) for path in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checker_sees_a_forbidden_edge(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from api.app import create_app\nimport jenius.client\n")
    assert imported_top_levels(module) >= {"api", "jenius"}
