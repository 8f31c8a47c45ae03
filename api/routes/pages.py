"""One pagination style for every list: ``?limit=`` (1..500, else 422), an opaque ``?cursor=``, and
``items``, ``has_more`` and ``next_cursor`` in the answer (pass ``next_cursor`` back as ``cursor``).

Cursors are URL-safe base64 of the keyset position (JSON), so they survive being pasted into a
query string; a cursor that does not decode is 422 ``invalid_request``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.params import QueryParameter

from api.guards import MAX_DATE, MIN_DATE
from api.problems import ApiError
from ledger.text import is_clean_text

T = TypeVar("T")
MAX_PAGE = 500


Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description=f"page size, 1..{MAX_PAGE}")]
Cursor = Annotated[
    str | None,
    QueryParameter(description="opaque position from the previous page's `next_cursor`", max_length=512),
]


def encode_cursor(*position: object) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(position))).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: Any) -> Any:
    """The position ``cursor`` encodes, as ``shape`` (e.g. ``tuple[datetime, str]``); None for no cursor."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = msgspec.json.decode(raw, type=shape)
    except (ValueError, msgspec.DecodeError) as exc:  # binascii.Error is a ValueError
        raise ApiError("invalid_request", "bad cursor: pass back a next_cursor as it came") from exc
    if not all(_storable(part) for part in position):  # a forged cursor is hostile input like any other
        raise ApiError("invalid_request", "bad cursor: pass back a next_cursor as it came")
    return position


def _storable(part: object) -> bool:
    """What SQL can take: int64 integers, text without control characters, instants in range."""
    if isinstance(part, bool):
        return True
    if isinstance(part, int):
        return -(2**63) <= part < 2**63
    if isinstance(part, str):
        return is_clean_text(part)
    if isinstance(part, datetime):
        return MIN_DATE <= part.date() <= MAX_DATE
    return True


def split_page(found: list[T], limit: int, key: Callable[[T], tuple[Any, ...]]) -> tuple[list[T], str | None]:
    """``found`` was fetched with ``limit + 1``: the page, and the cursor to the next one if any."""
    page = found[:limit]
    return page, (encode_cursor(*key(page[-1])) if len(found) > limit else None)
