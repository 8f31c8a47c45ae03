"""Where the service's PostgreSQL comes from.

Rule: PostgreSQL is the database everywhere. With ``DATABASE_URL`` set we use it; without it we
start an embedded PostgreSQL in a data directory that survives restarts (``SPLITLEDGER_DATA_DIR``,
default under the user's data dir). Nothing here ever substitutes a fake.

The embedded server comes from the ``pgserver`` wheel where it exists (CPython <= 3.12), else from
PostgreSQL's own server binaries: ``SPLITLEDGER_PG_BIN`` (forces them, also where pgserver is
installed), ``pg_ctl`` on ``PATH``, or ``pg_config --bindir``. When there are none,
``EmbeddedUnavailable`` says what to install.

A run that was killed (``kill -9``, a lost terminal) leaves two things behind: its pid in the list
of processes using the server (so the next run would never stop it), and possibly a
``postmaster.pid`` naming a process that is gone or is now something else. Both are recovered at
the next start: dead users are dropped from the list, and a ``postmaster.pid`` that names no
PostgreSQL of this data directory is removed before the server is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.store.database import create_pool

log = logging.getLogger("splitledger.database")

HANDLES = ".handle_pids.json"  # pgserver's list of the processes using a server; ours uses the same
WHAT_TO_INSTALL = (
    "install PostgreSQL's server binaries (Debian/Ubuntu: apt-get install postgresql; macOS: brew install "
    "postgresql@16; Fedora: dnf install postgresql-server) and put pg_ctl on PATH or set SPLITLEDGER_PG_BIN "
    "to their directory; or use Python 3.11/3.12, where the pgserver wheel brings them; or set DATABASE_URL"
)


class EmbeddedUnavailable(Exception):
    """No embedded PostgreSQL can be started here; ``hint`` says what to install."""

    def __init__(self, message: str, hint: str = WHAT_TO_INSTALL) -> None:
        super().__init__(message)
        self.hint = hint


def default_data_dir() -> Path:
    configured = os.environ.get("SPLITLEDGER_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("splitledger", appauthor=False))


# -- which server ---------------------------------------------------------------------------


def pg_config_bindir(run: Callable[[list[str]], str] | None = None) -> Path | None:
    """``pg_config --bindir`` when pg_config is on PATH."""
    found = shutil.which("pg_config")
    if found is None:
        return None
    try:
        if run is not None:
            out = run([found, "--bindir"])
        else:
            out = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return Path(out.strip()) if out.strip() else None


def has_server_binaries(bin_dir: Path) -> bool:
    return all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def find_server_binaries(
    environ: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    bindir_of_pg_config: Callable[[], Path | None] = pg_config_bindir,
) -> Path | None:
    """The directory of PostgreSQL's server binaries: ``SPLITLEDGER_PG_BIN``, then PATH, then pg_config."""
    env = os.environ if environ is None else environ
    configured = env.get("SPLITLEDGER_PG_BIN")
    if configured:
        if not has_server_binaries(Path(configured)):
            raise EmbeddedUnavailable(
                f"SPLITLEDGER_PG_BIN={configured} has no initdb, pg_ctl and postgres",
                "point SPLITLEDGER_PG_BIN at PostgreSQL's bin directory (pg_config --bindir prints it)",
            )
        return Path(configured)
    on_path = which("pg_ctl")
    if on_path is not None:
        candidate = Path(on_path).resolve().parent
        if has_server_binaries(candidate):
            return candidate
    from_config = bindir_of_pg_config()
    if from_config is not None and has_server_binaries(from_config):
        return from_config
    return None


def choose_server(
    environ: Mapping[str, str] | None = None,
    *,
    pgserver_installed: bool | None = None,
    find_binaries: Callable[[Mapping[str, str] | None], Path | None] = find_server_binaries,
) -> Path | None:
    """None = the pgserver wheel; a path = PostgreSQL's binaries there. ``EmbeddedUnavailable`` when neither."""
    env = os.environ if environ is None else environ
    if env.get("SPLITLEDGER_PG_BIN"):
        return find_binaries(env)
    if pgserver_installed is None:
        pgserver_installed = importlib.util.find_spec("pgserver") is not None
    if pgserver_installed:
        return None
    found = find_binaries(env)
    if found is None:
        raise EmbeddedUnavailable("no embedded PostgreSQL: the pgserver wheel is not installed and no pg_ctl was found")
    return found


# -- what a killed run left behind ----------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie that exited but was not reaped yet is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def command_line(pid: int) -> str:
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        with contextlib.suppress(OSError):
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return ""
    with contextlib.suppress(OSError):
        return subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True).stdout
    return ""


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def is_postgres_of(pid: int, data_dir: Path) -> bool:
    """Is ``pid`` a running PostgreSQL serving ``data_dir`` (not a pid reused by something else)?"""
    if not pid_alive(pid):
        return False
    cmd = command_line(pid)
    return "postgres" in cmd and str(data_dir) in cmd


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    """One process at a time changes the list of users or starts and stops the server."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(data_dir.parent / f".{data_dir.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_handles(data_dir: Path) -> list[int]:
    try:
        found = json.loads((data_dir / HANDLES).read_text())
    except (OSError, ValueError):
        return []
    return [p for p in found if isinstance(p, int)]


def write_handles(data_dir: Path, pids: list[int]) -> None:
    if data_dir.exists():
        (data_dir / HANDLES).write_text(json.dumps(pids))


def recover_stale(data_dir: Path) -> list[str]:
    """Forget processes that died while using the server; remove a postmaster.pid no server owns.

    Call with the lock held, before starting. Returns what was recovered (for the log)."""
    recovered: list[str] = []
    pids = read_handles(data_dir)
    alive = [p for p in pids if pid_alive(p)]
    if alive != pids:
        write_handles(data_dir, alive)
        recovered.append(f"dropped dead users {sorted(set(pids) - set(alive))}")
    pid = postmaster_pid(data_dir)
    if pid is not None and not is_postgres_of(pid, data_dir):
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
        recovered.append(f"removed stale postmaster.pid (pid {pid})")
    return recovered


# -- the server -----------------------------------------------------------------------------


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL bound to one data directory (unix socket, no TCP port).

    ``bin_dir`` None means "choose" (:func:`choose_server`). The server is stopped when the last
    process using it calls ``stop`` (``cleanup="stop"``), and its data deleted with ``"delete"``.
    """

    data_dir: Path
    cleanup: str | None = "stop"
    bin_dir: Path | None = None
    _server: Any = field(default=None, repr=False)
    _uri: str | None = field(default=None, repr=False)

    def start(self) -> str:
        self.data_dir = self.data_dir.expanduser().resolve()
        bin_dir = self.bin_dir or choose_server()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.data_dir):
            for what in recover_stale(self.data_dir):
                log.warning("embedded PostgreSQL: %s", what, extra={"data_dir": str(self.data_dir)})
        if bin_dir is None:
            return self._start_pgserver()
        self.bin_dir = bin_dir
        self._server = _BinariesServer(self.data_dir, bin_dir)
        self._uri = self._server.start()
        return self._uri

    def _start_pgserver(self) -> str:
        # pgserver logs every pg_ctl call at INFO and platformdirs warns about XDG_RUNTIME_DIR.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import get_server

        self._server = get_server(self.data_dir, cleanup_mode=self.cleanup)
        return str(self._server.get_uri())

    def uri(self, database: str | None = None) -> str:
        if isinstance(self._server, _BinariesServer):
            return self._server.uri(database)
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if isinstance(server, _BinariesServer):
            server.stop(self.cleanup)
        else:
            server.cleanup()


class _BinariesServer:
    """PostgreSQL from its own binaries, with the same list of users pgserver keeps."""

    def __init__(self, data_dir: Path, bin_dir: Path) -> None:
        self.data_dir = data_dir
        self.bin_dir = bin_dir
        self.socket_dir = _socket_dir(data_dir)
        self.user = _server_user()

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, user=self.user)
        if done.returncode != 0:
            log_tail = ""
            with contextlib.suppress(OSError):
                log_tail = (self.data_dir / "log").read_text()[-2000:]
            said = (done.stderr or done.stdout).strip()[-500:]
            raise EmbeddedUnavailable(
                f"{args[0]} failed ({done.returncode}): {said} {log_tail}".strip(),
                f"look at {self.data_dir / 'log'}; remove {self.data_dir} to start afresh",
            )

    def start(self) -> str:
        with locked(self.data_dir):
            if not (self.data_dir / "PG_VERSION").exists():
                self.data_dir.mkdir(parents=True, exist_ok=True)
                _hand_over(self.data_dir, self.user)
                self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8")
            pid = postmaster_pid(self.data_dir)
            if pid is None or not is_postgres_of(pid, self.data_dir):
                _hand_over(self.socket_dir, self.user)
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.data_dir / "log"),
                    "-o",
                    f"-h '' -k {self.socket_dir}",
                    "start",
                )
            pids = read_handles(self.data_dir)
            if os.getpid() not in pids:
                write_handles(self.data_dir, [*pids, os.getpid()])
        return self.uri()

    def uri(self, database: str | None = None) -> str:
        return f"postgresql://postgres:@/{database or 'postgres'}?host={self.socket_dir}"

    def stop(self, cleanup: str | None) -> None:
        with locked(self.data_dir):
            others = [p for p in read_handles(self.data_dir) if p != os.getpid() and pid_alive(p)]
            write_handles(self.data_dir, others)
            if others or cleanup is None:
                return
            pid = postmaster_pid(self.data_dir)
            if pid is not None and is_postgres_of(pid, self.data_dir):
                self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
            if cleanup == "delete":
                shutil.rmtree(self.data_dir, ignore_errors=True)


def _socket_dir(data_dir: Path) -> Path:
    # A unix socket path is limited to ~100 bytes: use the data directory when it is short enough.
    if len(str(data_dir / ".s.PGSQL.5432")) < 100:
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"splitledger-pg-{digest}"


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as ``postgres`` (created when missing)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True, capture_output=True)
    return "postgres"


def _hand_over(path: Path, user: str | None) -> None:
    """Let ``user`` own ``path`` and traverse its parents (only when we run as root)."""
    path.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def resolve_database_url(database_url: str | None = None) -> tuple[str, EmbeddedPostgres | None]:
    """Return a connection URL, starting the embedded server when none is configured."""
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        return url, None
    embedded = EmbeddedPostgres(default_data_dir() / "pgdata")
    return embedded.start(), embedded


__all__ = [
    "EmbeddedPostgres",
    "EmbeddedUnavailable",
    "choose_server",
    "create_pool",
    "default_data_dir",
    "find_server_binaries",
    "recover_stale",
    "resolve_database_url",
]
