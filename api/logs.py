"""Structured JSON logs: one object per line, with the request id when there is one."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

import msgspec

# Set by the request middleware; every log line written while serving a request carries it.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_encode = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id.get()
        if request_id is not None:
            body["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return _encode(body).decode()


class CoalescingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the lines logged during one turn of the event loop with one write, at the end of that
    turn (a busy worker logs many access lines per turn); warnings, errors and lines logged where no
    event loop runs are written at once, with whatever is waiting before them."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or record.levelno >= logging.WARNING:
            self._write()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._write_later)

    def _write_later(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _write(self) -> None:
        self._scheduled = False
        if not self._waiting:
            return
        lines, self._waiting = self._waiting, []
        try:
            self.stream.write(self.terminator.join(lines) + self.terminator)
            self.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "could not write log lines"}))

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()
        super().close()


def configure_logging(json_logs: bool = True, level: int = logging.INFO) -> None:
    # Every request writes an access line: skip what no line shows (thread and process), as the
    # logging docs' "Optimization" section describes.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = CoalescingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("splitledger")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
