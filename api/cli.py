"""The ``splitledger`` command: serve, migrate, platforms, sandbox, demo and operator tasks.

Rule: with no ``DATABASE_URL`` every command that needs a database starts the embedded PostgreSQL
(pgserver) in ``SPLITLEDGER_DATA_DIR``; commands never fall back to anything that is not PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from api.database import EmbeddedPostgres, resolve_database_url
from api.demo import run_demo
from api.keyring import generate_key, key_file_environment, key_file_of, load_keyring, read_key_file, write_key_file
from api.runtime import import_settlement_file, run_status_check_once
from api.settings import load_settings
from jenius.sandbox import build_arg_parser as sandbox_arguments
from jenius.sandbox import run_from_args
from ledger import errors
from ledger.service.gateways import configure_gateway, reseal_secrets
from ledger.service.platforms import create_platform
from ledger.store import Database
from ledger.store.database import create_pool
from ledger.store.gateways import GatewaySettings
from migrations.runner import migrate_url


def _with_database(args: argparse.Namespace) -> tuple[str, EmbeddedPostgres | None]:
    url, embedded = resolve_database_url(getattr(args, "database_url", None))
    return url, embedded


def cmd_migrate(args: argparse.Namespace) -> int:
    url, embedded = _with_database(args)
    try:
        applied = asyncio.run(migrate_url(url))
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_platforms_create(args: argparse.Namespace) -> int:
    url, embedded = _with_database(args)

    async def run() -> tuple[str, str]:
        await migrate_url(url)
        settings = load_settings()
        pool = await create_pool(url, min_size=1, max_size=2)
        db = Database(pool, keyring=load_keyring(settings, embedded) if args.doku_client_id else None)
        try:
            platform_id, key = await create_platform(db, args.name, args.id)
            if args.doku_client_id:
                gateway = GatewaySettings(
                    client_id=args.doku_client_id,
                    secret_key=args.doku_secret_key or "",
                    base_url=args.doku_base_url,
                )
                await configure_gateway(db, platform_id, gateway, allow_loopback_http=settings.doku_allow_loopback_http)
            return platform_id, key
        finally:
            await pool.close()

    try:
        platform_id, key = asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"platform: {platform_id}")
    print(f"api key:  {key}")
    print("(the key is shown once; store it now)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    url, embedded = _with_database(args)
    os.environ["DATABASE_URL"] = url  # workers inherit the one server this process started
    os.environ.update(key_file_environment(embedded))  # and the key file beside its data directory
    if args.no_migrate:
        os.environ["SPLITLEDGER_AUTO_MIGRATE"] = "false"
    else:
        asyncio.run(migrate_url(url))
        os.environ["SPLITLEDGER_AUTO_MIGRATE"] = "false"
    print(f"splitledger on http://{args.host}:{args.port}  (docs: /docs, health: /health)", flush=True)
    try:
        if args.server == "granian":
            from granian.constants import Interfaces
            from granian.server import Server

            Server(
                "api.app:app_from_env",
                address=args.host,
                port=args.port,
                workers=args.workers,
                interface=Interfaces.ASGI,
                factory=True,
                log_access=False,
            ).serve()
        else:
            import uvicorn

            uvicorn.run(
                "api.app:app_from_env",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_level="warning",
                access_log=False,
            )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    run_from_args(args)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(run_demo(port=args.port, keep_running=args.keep_running))


def cmd_status_check(args: argparse.Namespace) -> int:
    url, embedded = _with_database(args)
    try:
        keyring = load_keyring(load_settings(), embedded)
        checked = asyncio.run(run_status_check_once(url, older_than_s=args.older_than, keyring=keyring))
        print(f"checked {checked} pending order(s)")
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_import_settlement(args: argparse.Namespace) -> int:
    url, embedded = _with_database(args)
    try:
        summary = asyncio.run(
            import_settlement_file(url, args.platform, args.file, mapping=args.mapping, progress=not args.quiet)
        )
        print(summary)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_rotate_secrets_key(args: argparse.Namespace) -> int:
    """Re-seal every DOKU Secret Key under the first key. With a key file (the embedded default, or
    SPLITLEDGER_SECRETS_KEY_FILE) a new key is made and becomes the file's first line; with
    SPLITLEDGER_SECRETS_KEY="NEW,OLD" the first key given is the new one."""
    url, embedded = _with_database(args)
    settings = load_settings()

    async def run() -> int:
        keyring = load_keyring(settings, embedded)
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            return await reseal_secrets(Database(pool, keyring=keyring))
        finally:
            await pool.close()

    try:
        asyncio.run(migrate_url(url))
        path = key_file_of(settings, embedded)
        if path is not None:
            old = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            read_key_file(path)  # refuses a file others can read
            new = generate_key()
            write_key_file(path, [new, *old])  # the old keys still open what is not yet re-sealed
            count = asyncio.run(run())
            write_key_file(path, [new])
            where = f"key file {path}"
        else:
            count = asyncio.run(run())
            where = "the first key of SPLITLEDGER_SECRETS_KEY (drop the others once every process has it)"
    except errors.LedgerError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"re-sealed {count} DOKU secret key(s) under {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="splitledger", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=os.environ.get("SPLITLEDGER_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("SPLITLEDGER_PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("SPLITLEDGER_WORKERS", "1")))
    serve.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations first")
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="apply pending migrations")
    mig.set_defaults(func=cmd_migrate)

    platforms = sub.add_parser("platforms", help="manage marketplace platforms")
    psub = platforms.add_subparsers(dest="platforms_command", required=True)
    create = psub.add_parser("create", help="create a platform and print its API key once")
    create.add_argument("--name", required=True)
    create.add_argument("--id", help="platform id (default: derived from the name)")
    create.add_argument("--doku-client-id")
    create.add_argument("--doku-secret-key")
    create.add_argument("--doku-base-url")
    create.set_defaults(func=cmd_platforms_create)

    sandbox = sub.add_parser("sandbox", help="run the simulated DOKU on its own")
    sandbox_arguments(sandbox)
    sandbox.set_defaults(func=cmd_sandbox)

    demo = sub.add_parser("demo", help="tell one order's story end to end against the DOKU sandbox")
    demo.add_argument("--port", type=int, default=0)
    demo.add_argument("--keep-running", action="store_true", help="keep the service up after the story")
    demo.add_argument("--once", action="store_true", help="exit after the story (the default)")
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status-check", help="ask DOKU about orders pending too long")
    status.add_argument("--older-than", type=int, default=None, help="seconds (default: setting)")
    status.set_defaults(func=cmd_status_check)

    imp = sub.add_parser("import-settlement", help="import a DOKU settlement report (CSV or JSON)")
    imp.add_argument("--platform", required=True)
    imp.add_argument("--mapping", help="column mapping, e.g. invoice_number=Invoice,gross=Amount")
    imp.add_argument("--quiet", action="store_true")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_import_settlement)

    rotate = sub.add_parser("rotate-secrets-key", help="re-encrypt the stored DOKU secret keys under a new key")
    rotate.set_defaults(func=cmd_rotate_secrets_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
