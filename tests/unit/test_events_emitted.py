"""No reconciliation exception is opened without its event: use cases open them only through
``ledger.service.events.open_exceptions`` (which writes ``reconciliation.exception_opened``). Parsed
with ast, so a new direct ``uow.exceptions.add`` anywhere in the use cases fails here. (That every
event type is written at all: tests/api/test_events_feed.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "ledger" / "service"


def calls_to(path: Path, table: str, method: str) -> list[int]:
    """Lines calling ``<anything>.<table>.<method>(...)`` (e.g. ``uow.exceptions.add``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == table
        ):
            found.append(node.lineno)
    return found


def test_exceptions_are_opened_only_where_their_event_is_written() -> None:
    direct = {
        str(p.relative_to(ROOT)): lines
        for p in sorted(SERVICE.rglob("*.py"))
        if p.name != "events.py" and (lines := calls_to(p, "exceptions", "add"))
    }
    assert direct == {}, "open reconciliation exceptions with ledger.service.events.open_exceptions"


def test_the_checker_sees_a_direct_call(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("async def f(uow):\n    await uow.exceptions.add('p', [])\n")
    assert calls_to(module, "exceptions", "add") == [2]
