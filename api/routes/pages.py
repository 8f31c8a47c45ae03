"""One pagination style for every list: ``?limit=`` (1..500, else 422), an opaque ``?cursor=``, and
``items``, ``has_more`` and ``next_cursor`` in the answer (pass ``next_cursor`` back as ``cursor``).

Cursors are URL-safe base64 of the keyset position (JSON), so they survive being pasted into a
query string; a cursor that does not decode is 422 ``invalid_request``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.params import QueryParameter

from api.problems import ApiError

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
        return msgspec.json.decode(raw, type=shape)
    except (ValueError, msgspec.DecodeError) as exc:  # binascii.Error is a ValueError
        raise ApiError("invalid_request", "bad cursor: pass back a next_cursor as it came") from exc


def split_page(found: list[T], limit: int, key: Callable[[T], tuple[Any, ...]]) -> tuple[list[T], str | None]:
    """``found`` was fetched with ``limit + 1``: the page, and the cursor to the next one if any."""
    page = found[:limit]
    return page, (encode_cursor(*key(page[-1])) if len(found) > limit else None)
