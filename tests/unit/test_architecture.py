"""The direction of imports the layout promises, parsed with ast so a forbidden edge anywhere fails:

* api -> ledger, jenius; ledger never imports api or jenius; jenius never imports ledger or api;
* inside ledger: the pure core (``ledger/*.py``) imports neither the store nor the use cases, and the
  store (``ledger/store``) never imports the use cases (``ledger/service``);
* no import cycle among the project's modules, counting imports inside functions too (which is
  also why no project module imports another inside a function: a cycle hidden that way is still one).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "jenius", "ledger", "migrations")
FORBIDDEN = {
    "ledger": {"api", "jenius"},
    "jenius": {"api", "ledger"},
    "migrations": {"api", "jenius", "ledger"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def imported_top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: {m for m in imported_modules(path) if m in files and m != name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_inwards(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found in {package}"
    offenders = {str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package]) for path in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_pure_core_imports_neither_the_store_nor_the_use_cases() -> None:
    core = sorted((ROOT / "ledger").glob("*.py"))
    offenders = {
        p.name: sorted(m for m in imported_modules(p) if m.startswith(("ledger.store", "ledger.service"))) for p in core
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_store_never_imports_the_use_cases() -> None:
    offenders = {
        p.name: sorted(m for m in imported_modules(p) if m.startswith("ledger.service"))
        for p in (ROOT / "ledger" / "store").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycle_among_the_project_modules() -> None:
    assert cycles(project_graph()) == []


def test_no_project_module_is_imported_inside_a_function() -> None:
    hidden = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for func in ast.walk(ast.parse(path.read_text())):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(func):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                        if any(n.split(".")[0] in PACKAGES for n in names):
                            hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert hidden == []


def test_the_checkers_see_a_forbidden_edge_and_a_cycle(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from api.app import create_app\nimport jenius.client\n")
    assert imported_top_levels(module) >= {"api", "jenius"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
