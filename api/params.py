"""Path parameters with their bounds declared, so a value out of range is refused at decode (422
``invalid_request``) and never reaches SQL: no id beyond int64. Page sizes are bounded in
``api.routes.pages``, cursors checked when decoded; dates are bounded for every handler in
``api.guards``."""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter

INT64_MAX = 2**63 - 1

RowId = Annotated[int, PathParameter(ge=1, le=INT64_MAX)]
