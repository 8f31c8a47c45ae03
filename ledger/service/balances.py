"""A seller's balances and statement, read from the ledger (what they mean: ``ledger.balances``)."""

from __future__ import annotations

from datetime import datetime

from ledger import balances, errors
from ledger.balances import SellerBalances, SellerStatement, StatementScope
from ledger.store.database import Database, UnitOfWork


async def seller_balances(
    db: Database, platform_id: str, seller_id: str, *, as_of: datetime | None = None
) -> SellerBalances:
    """Pending, available and debt now, or as recorded at ``as_of``; ``SellerNotFound`` for no such seller."""
    return await db.read(lambda uow: read_seller_balances(uow, platform_id, seller_id, as_of=as_of))


async def read_seller_balances(
    uow: UnitOfWork, platform_id: str, seller_id: str, *, as_of: datetime | None = None
) -> SellerBalances:
    """``seller_balances`` inside a unit of work the caller already has."""
    try:
        found = await uow.ledger.balances(platform_id, balances.seller_codes(seller_id), as_of=as_of)
    except errors.UnknownAccount as exc:
        raise errors.SellerNotFound(f"no seller {seller_id!r}", seller_id=seller_id) from exc
    return balances.seller_balances_from(seller_id, found, as_of=as_of)


async def seller_statement(
    db: Database,
    platform_id: str,
    seller_id: str,
    *,
    account: StatementScope = "all",
    after: int | None = None,
    limit: int = 100,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SellerStatement:
    """A seller's postings oldest first with a running balance; keyset-paginated by posting id.

    ``since`` (inclusive) and ``until`` (exclusive) bound the posting time; the running balance
    still counts everything before the first line shown. ``ValueError`` for an unknown ``account``.
    """
    scope = balances.statement_scope(account)

    async def read(uow: UnitOfWork) -> SellerStatement:
        names = balances.account_names(
            seller_id, await uow.reports.account_ids(platform_id, balances.seller_codes(seller_id))
        )
        wanted = [account_id for account_id, name in names.items() if name in scope]
        postings = await uow.reports.postings(
            platform_id, wanted, after=after or 0, limit=limit + 1, since=since, until=until
        )
        before: dict[int, int] = {}
        if account == "all" and postings[:limit]:
            # Accounts the page posts to carry their balance before it; only the others are read,
            # and on the first page from the start nothing comes before it.
            before = balances.balances_before_page(postings[:limit], names)
            missing = [account_id for account_id in names if account_id not in before]
            if missing and (after or since is not None):
                before |= await uow.reports.balances_before(platform_id, missing, postings[0].posting_id)
        return balances.seller_statement_from(
            seller_id, account, postings, limit=limit, names=names, balances_before=before
        )

    return await db.read(read)
