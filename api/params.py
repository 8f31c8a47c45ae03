"""Query and path parameters with their bounds declared, so a value out of range is refused at
decode (422 ``invalid_request``) and never reaches SQL: no negative page sizes, no id beyond int64.
Dates are bounded for every handler in ``api.guards``."""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

INT64_MAX = 2**63 - 1
MAX_LIMIT = 500

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"page size, 1..{MAX_LIMIT}")]
RowId = Annotated[int, PathParameter(ge=1, le=INT64_MAX)]
Version = Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX, description="keyset cursor")]
