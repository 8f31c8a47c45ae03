"""Read endpoints for the raw ledger: accounts, balances (now or as of an instant), statements,
entries and the trial balance — all scoped to the caller's platform."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, get
from litestar.params import FromPath, FromQuery

from api.deps import PlatformId, ServicesDep
from api.params import RowId
from api.routes.pages import Cursor, Limit, decode_cursor, encode_cursor, split_page
from ledger.model import Account, JournalEntry, StatementLine, TrialBalance


class AccountBalance(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    balance: int
    as_of: datetime | None


class AccountPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Account]
    has_more: bool
    next_cursor: str | None


class StatementOut(msgspec.Struct, frozen=True, kw_only=True):
    """A page of an account's postings, oldest first, each with the running balance."""

    account: str
    lines: tuple[StatementLine, ...]
    has_more: bool
    next_cursor: str | None


class LedgerController(Controller):
    path = "/ledger"
    tags = ["ledger"]

    @get("/accounts", summary="List ledger accounts (keyset by code)")
    async def list_accounts(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        prefix: FromQuery[str | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> AccountPage:
        position = decode_cursor(cursor, tuple[str])
        after = position[0] if position else None
        found = await services.db.read(
            lambda uow: uow.ledger.list_accounts(platform_id, prefix=prefix, after=after, limit=limit + 1)
        )
        page, next_cursor = split_page(found, limit, lambda a: (a.code,))
        return AccountPage(items=page, has_more=next_cursor is not None, next_cursor=next_cursor)

    @get("/accounts/{code:str}", summary="One account with its current balance")
    async def get_account(self, services: ServicesDep, platform_id: PlatformId, code: FromPath[str]) -> Account:
        return await services.db.read(lambda uow: uow.ledger.get_account(platform_id, code))

    @get("/accounts/{code:str}/balance", summary="Balance now or as recorded at an instant")
    async def balance(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        code: FromPath[str],
        as_of: FromQuery[datetime | None] = None,
    ) -> AccountBalance:
        found = await services.db.read(lambda uow: uow.ledger.balances(platform_id, [code], as_of=as_of))
        return AccountBalance(account=code, balance=found[code], as_of=as_of)

    @get("/accounts/{code:str}/statement", summary="Postings with running balance (keyset by version)")
    async def statement(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        code: FromPath[str],
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> StatementOut:
        position = decode_cursor(cursor, tuple[int])
        after = position[0] if position else None
        found = await services.db.read(
            lambda uow: uow.ledger.statement(platform_id, code, after_version=after, limit=limit)
        )
        next_cursor = encode_cursor(found.next_cursor) if found.next_cursor is not None else None
        return StatementOut(
            account=found.account, lines=found.lines, has_more=next_cursor is not None, next_cursor=next_cursor
        )

    @get("/entries/{entry_id:int}", summary="A journal entry with its postings")
    async def entry(self, services: ServicesDep, platform_id: PlatformId, entry_id: RowId) -> JournalEntry:
        return await services.db.read(lambda uow: uow.ledger.get_entry(platform_id, entry_id))

    @get("/trial-balance", summary="Every account's balance; totals are zero when the books balance")
    async def trial_balance(self, services: ServicesDep, platform_id: PlatformId) -> TrialBalance:
        return await services.db.read(lambda uow: uow.ledger.trial_balance(platform_id))
