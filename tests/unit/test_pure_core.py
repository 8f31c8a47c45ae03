"""The functional core stays pure and the layers point inwards: ``ledger/*.py`` imports no store,
service or driver (no I/O), and ``ledger/store`` never imports the use cases above it. Parsed with
ast, so a forbidden import anywhere in a module fails, even one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LEDGER = Path(__file__).resolve().parents[2] / "ledger"
IO_MODULES = ("ledger.store", "ledger.service", "asyncpg", "httpx")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def forbidden(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported_modules(path) if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("module", sorted(p.name for p in LEDGER.glob("*.py")))
def test_the_pure_modules_do_no_io(module: str) -> None:
    assert forbidden(LEDGER / module, IO_MODULES) == []


@pytest.mark.parametrize("module", sorted(p.name for p in (LEDGER / "store").glob("*.py")))
def test_the_store_never_imports_the_use_cases(module: str) -> None:
    assert forbidden(LEDGER / "store" / module, ("ledger.service",)) == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from ledger import store\n\ndef f():\n    import asyncpg\n")
    assert forbidden(module, IO_MODULES) == ["asyncpg", "ledger.store"]
