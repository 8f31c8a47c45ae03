"""What text the ledger keeps: no control characters, nothing that is not Unicode text.

Rule: NUL, the other C0 controls except tab, line feed and carriage return, DEL and the C1
controls are refused wherever text comes in (bodies, URLs, reports), and so are lone surrogates
(what undecodable bytes turn into). PostgreSQL refuses NUL in ``text`` and ``jsonb``; the other
controls are never meant and hide things in logs, CSV exports and terminals.
"""

from __future__ import annotations

import re

# C0 except \t \n \r, DEL, C1, and the surrogate range (never valid on its own in UTF-8).
UNACCEPTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def is_clean_text(text: str) -> bool:
    """True when ``text`` holds no control character and no lone surrogate."""
    return UNACCEPTABLE.search(text) is None
