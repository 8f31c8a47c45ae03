"""Many rows in one INSERT that Citus routes to one shard: a multi-row ``VALUES`` list.

On one server the stores insert many rows as ``INSERT … SELECT … FROM unnest($2::text[], …)``: one
statement text whatever the number of rows. On a Citus cluster the same statement is planned
"INSERT … SELECT via the coordinator": the rows are computed there and copied into the shard, and
that copy always ends in a two-phase commit (PREPARE TRANSACTION / COMMIT PREPARED) even with one
participant. A multi-row ``INSERT … VALUES`` whose rows all carry the same platform is a router
query instead: one task on the node of the platform's shard, committed with a plain COMMIT
(docs/scale-out.md, "What is single-shard").

``insert_values`` writes the rows in chunks whose sizes are powers of two, so a table has at most a
dozen statement texts (each prepared once per connection), never one per batch size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import asyncpg

# PostgreSQL's wire protocol numbers a statement's parameters with 16 bits.
MAX_PARAMETERS = 32_767
MAX_ROWS_PER_STATEMENT = 1_024


def chunk_sizes(rows: int, per_chunk: int) -> Iterator[int]:
    """Sizes (powers of two, each at most ``per_chunk``, largest first) that add up to ``rows``."""
    largest = 1 << (max(per_chunk, 1).bit_length() - 1)
    left = rows
    while left:
        size = largest
        while size > left:
            size >>= 1
        yield size
        left -= size


def values_list(row_sql: Sequence[str], rows: int, first: int) -> str:
    """``($first::t, $k, …), (…)`` for ``rows`` rows: a column written ``$n`` is a parameter shared
    by every row, any other is the type a parameter of each row is cast to (``text``, ``bigint``)."""
    out = []
    n = first
    for _ in range(rows):
        cells = []
        for col in row_sql:
            if col.startswith("$"):
                cells.append(col)
            else:
                cells.append(f"${n}::{col}")
                n += 1
        out.append("(" + ", ".join(cells) + ")")
    return ", ".join(out)


async def insert_values(
    conn: asyncpg.Connection,
    head: str,
    row_sql: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    shared: Sequence[object] = (),
    tail: str = "",
) -> list[asyncpg.Record]:
    """Run ``{head} VALUES … {tail}`` for ``rows`` (each the values of the columns of ``row_sql``
    that are not shared, in order) and return what ``tail``'s RETURNING gave, in the rows' order."""
    per_row = sum(not col.startswith("$") for col in row_sql)
    per_chunk = min(MAX_ROWS_PER_STATEMENT, (MAX_PARAMETERS - len(shared)) // max(per_row, 1))
    returned: list[asyncpg.Record] = []
    done = 0
    for size in chunk_sizes(len(rows), per_chunk):
        sql = f"{head} VALUES {values_list(row_sql, size, len(shared) + 1)} {tail}"
        params = [value for row in rows[done : done + size] for value in row]
        returned.extend(await conn.fetch(sql, *shared, *params))
        done += size
    return returned
