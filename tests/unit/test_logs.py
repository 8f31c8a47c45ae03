"""Every log line written while serving a request carries that request's id, as JSON."""

from __future__ import annotations

import json
import logging

from api.logs import JsonFormatter, current_request_id


def _line(message: str, **extra: object) -> dict:
    record = logging.LogRecord("splitledger.test", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(JsonFormatter().format(record))


def test_a_line_written_during_a_request_carries_its_id() -> None:
    token = current_request_id.set("req-123")
    try:
        line = _line("refund not confirmed", refund_id="rf-1")
    finally:
        current_request_id.reset(token)
    assert line["request_id"] == "req-123"
    assert line["refund_id"] == "rf-1" and line["level"] == "warning" and line["msg"] == "refund not confirmed"


def test_a_line_outside_any_request_has_no_id() -> None:
    assert "request_id" not in _line("status fallback")
