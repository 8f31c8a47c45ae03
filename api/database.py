"""Where the service's PostgreSQL comes from.

Rule: PostgreSQL is the database everywhere. With ``DATABASE_URL`` set we use it; without it we
start an embedded PostgreSQL from the ``pgserver`` wheel in a data directory that survives restarts
(``SPLITLEDGER_DATA_DIR``, default under the user's data dir). Nothing here ever substitutes a fake.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.store.database import create_pool


def default_data_dir() -> Path:
    configured = os.environ.get("SPLITLEDGER_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("splitledger", appauthor=False))


@dataclass
class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL bound to one data directory (unix socket, no TCP port)."""

    data_dir: Path
    cleanup: str | None = "stop"
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        import logging
        import warnings

        # pgserver logs every pg_ctl call at INFO and platformdirs warns about XDG_RUNTIME_DIR.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode=self.cleanup)
        return str(self._server.get_uri())

    def uri(self, database: str | None = None) -> str:
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def resolve_database_url(database_url: str | None = None) -> tuple[str, EmbeddedPostgres | None]:
    """Return a connection URL, starting the embedded server when none is configured."""
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        return url, None
    embedded = EmbeddedPostgres(default_data_dir() / "pgdata")
    return embedded.start(), embedded


__all__ = ["EmbeddedPostgres", "create_pool", "default_data_dir", "resolve_database_url"]
