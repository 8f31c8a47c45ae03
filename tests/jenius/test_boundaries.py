"""``jenius`` is the seam to DOKU: it must not reach into the ledger or the API."""

from __future__ import annotations

import ast
from pathlib import Path

import jenius

FORBIDDEN = ("ledger", "api")
PACKAGE = Path(jenius.__file__).parent


def imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def test_the_check_sees_every_import_form() -> None:
    source = "import ledger\nimport api.app as a\nfrom ledger.model import X\nfrom api import routes\n"
    assert {m for m in imported_modules(source) if is_forbidden(m)} == {"ledger", "api.app", "ledger.model", "api"}
    assert not is_forbidden("apispec") and not is_forbidden("ledgerlike")


def test_jenius_imports_neither_ledger_nor_api() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 6  # signing, messages, errors, client, sandbox...: the check is looking at them
    edges = {
        f"{path.name} -> {module}"
        for path in files
        for module in imported_modules(path.read_text())
        if is_forbidden(module)
    }
    assert edges == set()
