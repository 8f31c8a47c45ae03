"""Pagination helpers shared by the list endpoints: opaque, URL-safe keyset cursors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from api.problems import ApiError

T = TypeVar("T")
MAX_PAGE = 500


def encode_cursor(created_at: datetime, key: str) -> str:
    """An opaque, URL-safe cursor: a timestamp's ``+00:00`` pasted into a query string reads as a space."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode().rstrip("=")


def page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def split_page(found: list[T], limit: int, key: Callable[[T], tuple[datetime, str]]) -> tuple[list[T], str | None]:
    """``found`` was fetched with ``limit + 1``: the page, and the cursor to the next one if any."""
    page = found[:limit]
    return page, (encode_cursor(*key(page[-1])) if len(found) > limit else None)


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, sep, key = text.partition("|")
        if not sep:
            raise ValueError("no key")
        return datetime.fromisoformat(stamp), key
    except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError
        raise ApiError("invalid_request", "bad cursor") from exc
