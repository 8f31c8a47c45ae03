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
from pathlib import Path

import msgspec

from api.database import EmbeddedPostgres, resolve_database_url
from api.demo import run_demo
from api.runtime import import_settlement_file, run_status_check_once
from api.sealing import load_signer
from api.settings import load_settings
from jenius.sandbox import build_arg_parser as sandbox_arguments
from jenius.sandbox import run_from_args
from ledger import errors
from ledger.chain import Checkpoint, Finding
from ledger.service import sealer
from ledger.service.gateways import configure_gateway
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
        pool = await create_pool(url, min_size=1, max_size=2)
        db = Database(pool)
        try:
            platform_id, key = await create_platform(db, args.name, args.id)
            if args.doku_client_id:
                settings = GatewaySettings(
                    client_id=args.doku_client_id,
                    secret_key=args.doku_secret_key or "",
                    base_url=args.doku_base_url,
                )
                await configure_gateway(db, platform_id, settings)
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
        checked = asyncio.run(run_status_check_once(url, older_than_s=args.older_than))
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


def _read_checkpoints(path: str | None) -> list[Checkpoint]:
    if not path:
        return []
    raw = Path(path).read_bytes()
    decoded = msgspec.json.decode(raw)
    return msgspec.convert(decoded if isinstance(decoded, list) else [decoded], list[Checkpoint])


async def _verify(url: str, args: argparse.Namespace) -> int:
    checkpoints = _read_checkpoints(args.checkpoint)
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
                platform_id=args.platform or (checkpoint.platform_id if checkpoint else None),
                since_block=args.since,
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


def cmd_verify(args: argparse.Namespace) -> int:
    url, embedded = _with_database(args)
    try:
        return asyncio.run(_verify(url, args))
    finally:
        if embedded is not None:
            embedded.stop()


async def _export(url: str, platform: str | None) -> bytes:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        db = Database(pool)
        signer = load_signer(load_settings())
        await sealer.Sealer(db, signer).seal_once()  # what is posted now is in the checkpoint
        if platform:
            return msgspec.json.encode(await sealer.latest_checkpoint(db, signer, platform))
        ids = await db.read(lambda uow: uow.chain.platform_ids())
        found = []
        for pid in ids:
            try:
                found.append(await sealer.latest_checkpoint(db, signer, pid))
            except errors.NotSealedYet:
                continue
        return msgspec.json.encode(found)
    finally:
        await pool.close()


def cmd_checkpoint(args: argparse.Namespace) -> int:
    url, embedded = _with_database(args)
    try:
        exported = asyncio.run(_export(url, args.platform))
    finally:
        if embedded is not None:
            embedded.stop()
    if args.out:
        Path(args.out).write_bytes(exported + b"\n")
        print(f"checkpoint written to {args.out}")
    else:
        sys.stdout.write(exported.decode() + "\n")
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
    verify = sub.add_parser("verify", help="recompute every hash, block and balance; exit 1 when tampered")
    verify.add_argument("--platform", help="only this platform (default: all)")
    verify.add_argument("--since", type=int, default=1, metavar="BLOCK", help="start at this block")
    verify.add_argument("--checkpoint", metavar="FILE", help="an exported checkpoint to check the database against")
    verify.set_defaults(func=cmd_verify)

    checkpoint = sub.add_parser("checkpoint", help="seal what is posted and export the latest signed checkpoint")
    checkpoint.add_argument("--export", action="store_true", help="write the checkpoint (the default action)")
    checkpoint.add_argument("--platform", help="one platform (default: every platform, as a JSON list)")
    checkpoint.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    checkpoint.set_defaults(func=cmd_checkpoint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
