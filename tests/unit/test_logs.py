"""Every log line written while serving a request carries that request's id, as JSON."""

from __future__ import annotations

import asyncio
import json
import logging

from api.logs import CoalescingHandler, JsonFormatter, current_request_id


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


class _Stream:
    """A stream that remembers each write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def _logger(stream: _Stream) -> logging.Logger:
    handler = CoalescingHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"splitledger.test.coalescing.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


async def test_lines_of_one_event_loop_turn_are_written_together_at_its_end() -> None:
    stream = _Stream()
    log = _logger(stream)
    log.info("request", extra={"n": 1})
    log.info("request", extra={"n": 2})
    assert stream.writes == []  # not yet: the turn is not over
    await asyncio.sleep(0)
    assert len(stream.writes) == 1
    assert [json.loads(line)["n"] for line in stream.writes[0].splitlines()] == [1, 2]


async def test_a_warning_is_written_at_once_after_what_waited_before_it() -> None:
    stream = _Stream()
    log = _logger(stream)
    log.info("request")
    log.warning("refund not confirmed")
    assert [json.loads(line)["level"] for line in stream.writes[0].splitlines()] == ["info", "warning"]


def test_outside_an_event_loop_every_line_is_written_at_once() -> None:
    stream = _Stream()
    _logger(stream).info("status fallback")
    assert len(stream.writes) == 1
