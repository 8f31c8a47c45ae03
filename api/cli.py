"""The ``splitledger`` command: serve, migrate, platforms, sandbox, demo and operator tasks.

Rules: with no ``DATABASE_URL`` every command that needs a database starts the embedded PostgreSQL
in ``SPLITLEDGER_DATA_DIR`` and stops it on the way out, also on Ctrl-C and SIGTERM; commands never
fall back to anything that is not PostgreSQL. Every failure a person can cause (a wrong
``DATABASE_URL``, a port in use, a bad CSV, an unknown platform) is one line on stderr with a hint,
and a non-zero exit: 1 for an error, 2 for a usage mistake, 3 when ``import-settlement`` left lines
as exceptions; 130/143 after Ctrl-C/SIGTERM. Tracebacks are for bugs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import asyncpg
import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.database import EmbeddedPostgres, EmbeddedUnavailable, resolve_database_url
from api.demo import run_demo, rupiah
from api.keyring import generate_key, key_file_environment, key_file_of, load_keyring, read_key_file, write_key_file
from api.runtime import PlatformNotFound, import_settlement_file, run_status_check_once
from api.sealing import load_signer
from api.settings import load_settings
from jenius.sandbox import parse_merchant, run_sandbox
from jenius.sandbox_notify import DOKU_RETRY_SCHEDULE_S
from ledger import errors
from ledger.chain import Checkpoint, Finding
from ledger.errors import LedgerError
from ledger.service import sealer
from ledger.service.gateways import configure_gateway, reencrypt_secrets
from ledger.service.platforms import create_platform
from ledger.settlement import ImportSummary
from ledger.store import Database
from ledger.store.database import create_pool
from ledger.store.gateways import GatewaySettings
from migrations.runner import migrate_url

T = TypeVar("T")
EXIT_ERROR = 1
EXIT_EXCEPTIONS = 3  # import-settlement: some lines became reconciliation exceptions


def splitledger_version() -> str:
    try:
        return package_version("splitledger")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


# -- one-line errors ------------------------------------------------------------------------


class CliError(click.ClickException):
    """An expected failure: ``error: <message>`` and ``hint: <hint>`` on stderr, exit 1."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


def _redacted(url: str) -> str:
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}://{user}:***@{host}" if ":" in credentials else url


def explain(exc: BaseException, url: str | None) -> CliError | None:
    """The one line (and hint) for an exception a person can cause; None for a bug."""
    where = f" at {_redacted(url)}" if url else ""
    check_url = "check DATABASE_URL / --database-url (unset it to use the embedded PostgreSQL)"
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, EmbeddedUnavailable):
        return CliError(str(exc), exc.hint)
    if isinstance(exc, PlatformNotFound):
        return CliError(
            f"no platform {exc.platform_id!r} in this database",
            "the id is printed by `splitledger platforms create`; check --database-url too",
        )
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return CliError(f"PostgreSQL{where} refused the login: {exc}", check_url)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return CliError(f"PostgreSQL{where}: {exc}", "create the database first (createdb NAME), or " + check_url)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError) or (
        isinstance(exc, ValueError) and "dsn" in str(exc).lower()
    ):
        return CliError(f"not a PostgreSQL URL{where}: {exc}", "use postgresql://USER:PASSWORD@HOST:5432/DATABASE")
    if isinstance(exc, socket.gaierror):
        return CliError(f"cannot resolve the database host{where}: {exc.strerror}", check_url)
    if isinstance(exc, ConnectionError | TimeoutError | OSError) and not isinstance(exc, FileNotFoundError):
        return CliError(f"cannot reach PostgreSQL{where}: {exc.strerror or exc}", "is it running? " + check_url)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return CliError(f"PostgreSQL{where}: {exc}", check_url)
    if isinstance(exc, LedgerError):
        code = exc.code
        hint = {
            "settlement_report_invalid": "check the report's columns; map them with --mapping "
            "invoice_number=COL,gross=COL,fee=COL,net=COL",
            "database_unavailable": check_url,
            "platform_exists": "choose another --id, or leave it out to derive one from the name",
        }.get(code)
        return CliError(f"{code}: {exc.detail}", hint)
    return None


def fail(message: str, hint: str | None = None) -> NoReturn:
    raise CliError(message, hint)


# -- signals and the embedded database ------------------------------------------------------


class Stopped(BaseException):
    """SIGTERM arrived: unwind (closing what was opened) and exit 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Stopped


@dataclass
class Run:
    """What every command gets: the database URL as given (None = DATABASE_URL, else embedded)."""

    database_url: str | None


@contextlib.contextmanager
def database(run: Run) -> Iterator[str]:
    """The database URL; the embedded PostgreSQL is started here and always stopped on the way out."""
    url = run.database_url or os.environ.get("DATABASE_URL")
    embedded: EmbeddedPostgres | None = None
    try:
        url, embedded = resolve_database_url(url)
        os.environ.update(key_file_environment(embedded))  # its secrets key file, beside its data directory
        yield url
    except Exception as exc:
        found = explain(exc, url)
        if found is None:
            raise
        raise found from exc
    finally:
        if embedded is not None:
            embedded.stop()


def run_async(work: Callable[[], Any]) -> Any:
    return asyncio.run(work())


# -- the commands ---------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(splitledger_version(), "-V", "--version", prog_name="splitledger", message="%(prog)s %(version)s")
@click.option("--database-url", metavar="URL", help="PostgreSQL URL (default: $DATABASE_URL, else the embedded one)")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Split-settlement ledger for marketplaces paid through DOKU Jenius Pay."""
    ctx.obj = Run(database_url=database_url)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


@cli.command()
@click.option("--host", default=lambda: os.environ.get("SPLITLEDGER_HOST", "127.0.0.1"), show_default="127.0.0.1")
@click.option("--port", type=int, default=lambda: int(os.environ.get("SPLITLEDGER_PORT", "8000")), show_default="8000")
@click.option("--workers", type=click.IntRange(1, 64), default=lambda: int(os.environ.get("SPLITLEDGER_WORKERS", "1")))
@click.option("--server", type=click.Choice(["granian", "uvicorn"]), default="granian", show_default=True)
@click.option("--no-migrate", is_flag=True, help="do not apply pending migrations first")
@click.pass_obj
def serve(run: Run, host: str, port: int, workers: int, server: str, no_migrate: bool) -> int:
    """Run the HTTP service."""
    if port and not port_is_free(host, port):
        fail(f"port {port} on {host} is in use", f"stop what listens there, or choose another with --port (now {port})")
    with database(run) as url, metrics_directory(workers):
        os.environ["DATABASE_URL"] = url  # workers inherit the one server this process started
        if not no_migrate:
            run_async(lambda: migrate_url(url))
        os.environ["SPLITLEDGER_AUTO_MIGRATE"] = "false"
        print(f"splitledger on http://{host}:{port}  (docs: /docs, health: /health)", flush=True)
        if server == "granian":
            from granian.constants import Interfaces
            from granian.server import Server

            Server(
                "api.app:app_from_env",
                address=host,
                port=port,
                workers=workers,
                interface=Interfaces.ASGI,
                factory=True,
                log_access=False,
            ).serve()
        else:
            import uvicorn

            uvicorn.run(
                "api.app:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
                access_log=False,
            )
    return 0


@contextlib.contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """Workers share their metrics through files (prometheus-client's multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="splitledger-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


@cli.command()
@click.pass_obj
def migrate(run: Run) -> int:
    """Apply pending migrations."""
    with database(run) as url:
        applied = run_async(lambda: migrate_url(url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


@cli.group()
def platforms() -> None:
    """Manage marketplace platforms."""


@platforms.command("create")
@click.option("--name", required=True)
@click.option("--id", "platform_id", help="platform id (default: derived from the name)")
@click.option("--doku-client-id")
@click.option("--doku-secret-key")
@click.option("--doku-base-url")
@click.pass_obj
def platforms_create(
    run: Run,
    name: str,
    platform_id: str | None,
    doku_client_id: str | None,
    doku_secret_key: str | None,
    doku_base_url: str | None,
) -> int:
    """Create a platform and print its API key once."""

    async def create(url: str) -> tuple[str, str]:
        await migrate_url(url)
        settings = load_settings()
        pool = await create_pool(url, min_size=1, max_size=2)
        db = Database(pool, keyring=load_keyring(settings) if doku_client_id else None)
        try:
            created, key = await create_platform(db, name, platform_id)
            if doku_client_id:
                gateway = GatewaySettings(
                    client_id=doku_client_id, secret_key=doku_secret_key or "", base_url=doku_base_url
                )
                await configure_gateway(db, created, gateway, allow_loopback_http=settings.doku_allow_loopback_http)
            return created, key
        finally:
            await pool.close()

    with database(run) as url:
        created, key = run_async(lambda: create(url))
    print(f"platform: {created}")
    print(f"api key:  {key}")
    print("(the key is shown once; store it now)")
    return 0


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8070, show_default=True)
@click.option("--merchant", "merchants", multiple=True, metavar="CLIENT_ID:SECRET_KEY[:NOTIFICATION_URL]")
@click.option("--auto-approve-after", type=float, default=None, metavar="SECONDS")
@click.option("--expire-after", type=float, default=None, metavar="SECONDS")
@click.option(
    "--retry-schedule",
    default=",".join(f"{s:g}" for s in DOKU_RETRY_SCHEDULE_S),
    metavar="S,S,S",
    help="seconds between notification attempts (DOKU: 1800,21600,43200)",
)
@click.option("--fee-bps", type=int, default=100, show_default=True)
@click.option("--fee-fixed", type=int, default=2_000, show_default=True)
def sandbox(
    host: str,
    port: int,
    merchants: tuple[str, ...],
    auto_approve_after: float | None,
    expire_after: float | None,
    retry_schedule: str,
    fee_bps: int,
    fee_fixed: int,
) -> int:
    """Run the simulated DOKU on its own."""
    if not port_is_free(host, port):
        fail(f"port {port} on {host} is in use", "stop what listens there, or choose another with --port")
    try:
        parsed = [parse_merchant(spec) for spec in merchants]
        schedule = tuple(float(s) for s in retry_schedule.split(",") if s.strip())
    except ValueError as exc:
        fail(str(exc), "e.g. --merchant MCH-1:SK-secret:http://127.0.0.1:8000/v1/doku/notifications")
    run_sandbox(
        host,
        port,
        merchants=parsed,
        auto_approve_after_s=auto_approve_after,
        expire_after_s=expire_after,
        retry_schedule_s=schedule,
        fee_bps=fee_bps,
        fee_fixed=fee_fixed,
    )
    return 0


@cli.command()
@click.option("--port", type=int, default=0, help="the service's port (default: any free one)")
@click.option("--sandbox-port", type=int, default=0, help="the DOKU sandbox's port (default: any free one)")
@click.option("--keep-running", is_flag=True, help="keep the service up after the story")
@click.option("--once", is_flag=True, help="exit after the story (the default)")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    default=lambda: os.environ.get("SPLITLEDGER_DEMO_ENV", "demo.env"),
    show_default="demo.env",
    help="where --keep-running writes API, KEY and SANDBOX for the README's walkthrough",
)
def demo(port: int, sandbox_port: int, keep_running: bool, once: bool, env_file: str) -> int:
    """Tell one order's story end to end against the DOKU sandbox."""
    for chosen, what in ((port, "--port"), (sandbox_port, "--sandbox-port")):
        if chosen and not port_is_free("127.0.0.1", chosen):
            fail(f"port {chosen} is in use", f"choose another with {what}, or 0 for any free one")
    try:
        code: int = asyncio.run(
            run_demo(
                port=port,
                sandbox_port=sandbox_port,
                keep_running=keep_running and not once,
                env_file=env_file if keep_running and not once else None,
            )
        )
    except Exception as exc:
        found = explain(exc, None)
        if found is None:
            raise
        raise found from exc
    return code


@cli.command("status-check")
@click.option("--older-than", type=int, default=None, help="seconds (default: setting)")
@click.pass_obj
def status_check(run: Run, older_than: int | None) -> int:
    """Ask DOKU about orders pending too long."""
    with database(run) as url:
        keyring = load_keyring(load_settings())
        checked = run_async(lambda: run_status_check_once(url, older_than_s=older_than, keyring=keyring))
    print(f"checked {checked} pending order(s)")
    return 0


def cmd_rotate_secrets_key(url: str) -> str:
    """Re-encrypt every DOKU Secret Key under the first key; what was done, for the operator.

    With a key file (the embedded default, or SPLITLEDGER_SECRETS_KEY_FILE) a new key is made and
    becomes the file's first line (the old ones open until everything is re-encrypted, then go); with
    SPLITLEDGER_SECRETS_KEY="NEW,OLD" the first key given is the new one.
    """
    settings = load_settings()

    async def reencrypt() -> int:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            return await reencrypt_secrets(Database(pool, keyring=load_keyring(settings)))
        finally:
            await pool.close()

    run_async(lambda: migrate_url(url))
    path = key_file_of(settings, None)
    if path is None:
        count = run_async(reencrypt)
        return (
            f"re-encrypted {count} DOKU secret key(s) under the first key of SPLITLEDGER_SECRETS_KEY (drop the others)"
        )
    old = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    read_key_file(path)  # refuses a file others can read
    new = generate_key()
    write_key_file(path, [new, *old])
    count = run_async(reencrypt)
    write_key_file(path, [new])
    return f"re-encrypted {count} DOKU secret key(s) under a new key in {path}"


@cli.command("rotate-secrets-key")
@click.pass_obj
def rotate_secrets_key(run: Run) -> int:
    """Re-encrypt the stored DOKU Secret Keys under a new key."""
    with database(run) as url:
        print(cmd_rotate_secrets_key(url))
    return 0


@cli.command("import-settlement")
@click.option("--platform", required=True, help="the platform's id")
@click.option("--mapping", help="column mapping, e.g. invoice_number=Invoice,gross=Amount")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option(
    "--accept-exceptions",
    is_flag=True,
    help="exit 0 even when lines became reconciliation exceptions (default: exit 3)",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def import_settlement(
    run: Run, platform: str, mapping: str | None, quiet: bool, accept_exceptions: bool, file: str
) -> int:
    """Import a DOKU settlement report (CSV or JSON) and print what became of its lines."""
    err = Console(stderr=True)
    with (
        database(run) as url,
        Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("lines"),
            TimeRemainingColumn(),
            console=err,
            disable=quiet,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task("import", total=None)

        def show(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = run_async(lambda: import_settlement_file(url, platform, file, mapping=mapping, progress=show))
    Console().print(summary_table(summary))
    exceptions = summary.exception_count
    print(
        f"report {summary.report_id}: {summary.booked} line(s) booked, {exceptions} exception(s)"
        + (" (imported before)" if summary.already_imported else "")
    )
    if exceptions and not accept_exceptions:
        click.echo(
            f"error: {exceptions} line(s) became reconciliation exceptions\n"
            "hint: see GET /v1/reconciliation/exceptions; rerun with --accept-exceptions to exit 0",
            err=True,
        )
        return EXIT_EXCEPTIONS
    return 0


def summary_table(summary: ImportSummary) -> Table:
    table = Table(title=f"settlement report {summary.report_id} ({summary.source_name}, {summary.format})")
    table.add_column("lines")
    table.add_column("count", justify="right")
    table.add_column("amount", justify="right")
    table.add_row("read", str(summary.lines), "")
    table.add_row("skipped (not payments)", str(summary.skipped), "")
    table.add_row("booked", str(summary.booked), f"gross {rupiah(summary.gross)}")
    table.add_row("", "", f"DOKU fee {rupiah(summary.fee)}")
    table.add_row("", "", f"net to bank {rupiah(summary.net)}")
    for kind, count in sorted(summary.exceptions.items()):
        table.add_row(f"exception: {kind}", str(count), "")
    return table


# -- tamper evidence ------------------------------------------------------------------------


def _read_checkpoints(path: str | None) -> list[Checkpoint]:
    if not path:
        return []
    try:
        decoded = msgspec.json.decode(Path(path).read_bytes())
        return msgspec.convert(decoded if isinstance(decoded, list) else [decoded], list[Checkpoint])
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        fail(f"cannot read the checkpoint {path}: {exc}", "pass a file written by `splitledger checkpoint --export`")


async def _verify(url: str, platform: str | None, since: int, checkpoints: list[Checkpoint]) -> int:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        db = Database(pool)
        signer = load_signer(load_settings())
        findings: list[Finding] = []
        counted: dict[str, int] = {}
        given: list[Checkpoint | None] = [*checkpoints] or [None]
        for checkpoint in given:
            found, counted = await sealer.verify(
                db,
                signer,
                platform_id=platform or (checkpoint.platform_id if checkpoint else None),
                since_block=since,
                checkpoint=checkpoint,
            )
            findings += [f for f in found if f not in findings]
    finally:
        await pool.close()
    for f in findings:
        where = "".join(
            f" {label} {value}"
            for label, value in (("block", f.block_no), ("entry", f.entry_id), ("account", f.account_id))
            if value is not None
        )
        print(f"{f.kind}: platform {f.platform_id}{where}: {f.detail}")
    summary = (
        f"{counted.get('platforms', 0)} platform(s), {counted.get('entries', 0)} entries, "
        f"{counted.get('postings', 0)} postings, {counted.get('blocks', 0)} blocks"
    )
    if findings:
        print(f"TAMPERED: {len(findings)} finding(s) in {summary}")
        return 1
    print(
        f"verified: {summary}; every hash, block, signature, running balance and the trial balance hold"
        + (f"; {len(checkpoints)} checkpoint(s) match" if checkpoints else "")
    )
    return 0


@cli.command()
@click.option("--platform", help="only this platform (default: all)")
@click.option("--since", type=int, default=1, metavar="BLOCK", help="start at this block")
@click.option("--checkpoint", metavar="FILE", help="an exported checkpoint to check the database against")
@click.pass_obj
def verify(run: Run, platform: str | None, since: int, checkpoint: str | None) -> int:
    """Recompute every hash, block and balance; exit 1 when anything was tampered with."""
    checkpoints = _read_checkpoints(checkpoint)
    with database(run) as url:
        code: int = run_async(lambda: _verify(url, platform, since, checkpoints))
    return code


async def _export(url: str, platform: str | None) -> bytes:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        db = Database(pool)
        signer = load_signer(load_settings())
        await sealer.Sealer(db, signer).seal_once()  # what is posted now is in the checkpoint
        if platform:
            return msgspec.json.encode(await sealer.latest_checkpoint(db, signer, platform))
        found = []
        for pid in await db.read(lambda uow: uow.chain.platform_ids()):
            try:
                found.append(await sealer.latest_checkpoint(db, signer, pid))
            except errors.NotSealedYet:
                continue
        return msgspec.json.encode(found)
    finally:
        await pool.close()


@cli.command()
@click.option("--export", "export_", is_flag=True, help="write the checkpoint (the default action)")
@click.option("--platform", help="one platform (default: every platform, as a JSON list)")
@click.option("--out", metavar="FILE", help="file to write (default: standard output)")
@click.pass_obj
def checkpoint(run: Run, export_: bool, platform: str | None, out: str | None) -> int:
    """Seal what is posted and export the latest signed checkpoint, to keep outside the database."""
    with database(run) as url:
        exported: bytes = run_async(lambda: _export(url, platform))
    if out:
        Path(out).write_bytes(exported + b"\n")
        print(f"checkpoint written to {out}")
    else:
        sys.stdout.write(exported.decode() + "\n")
    return 0


# -- the entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``splitledger …``: the exit code (never a traceback for an expected failure)."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="splitledger", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except CliError as exc:
        exc.show()
        return exc.exit_code
    except click.ClickException as exc:  # usage mistakes: click's own one-line message, exit 2
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        return 130
    except Stopped:
        click.echo("stopped (SIGTERM)", err=True)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result if isinstance(result, int) else 0


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
