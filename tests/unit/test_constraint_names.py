"""A refusal's constraint name is recovered from its message where the database does not send it.

On a Citus cluster a worker's error reaches the client with its SQLSTATE and message only (Citus
forwards no constraint name) and a shard's constraint names end in the shard's id: every RAISE the
migrations make must therefore be recognisable by its wording (ledger/store/driver.py), and every
name PostgreSQL quotes in its own messages must come back without the shard id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from ledger.store.driver import constraint_name
from migrations.runner import load_migrations

_RAISE = re.compile(
    r"RAISE EXCEPTION '(?P<format>(?:[^']|'')*)'(?P<args>.*?)USING\s+ERRCODE\s*=\s*'\w+'\s*,\s*"
    r"CONSTRAINT\s*=\s*(?P<constraint>'\w+'|TG_TABLE_NAME \|\| '\w+')",
    re.DOTALL,
)


@dataclass
class Refusal:
    message: str
    constraint_name: str | None = None


def raises_of_every_migration() -> list[tuple[str, str, str]]:
    found = []
    for migration in load_migrations():
        for match in _RAISE.finditer(migration.sql):
            found.append((migration.name, match.group("format").replace("''", "'"), match.group("constraint")))
    return found


RAISES = raises_of_every_migration()


def test_the_migrations_raise_refusals_at_all():
    # the pattern above finds them (else the test below would pass on nothing)
    assert len(RAISES) >= 25


@pytest.mark.parametrize(("migration", "format_", "constraint"), RAISES, ids=[f"{m}:{c}" for m, _, c in RAISES])
@pytest.mark.parametrize("table", ["postings", "postings_102394"])
def test_every_raised_refusal_is_named_by_its_message_alone(migration, format_, constraint, table):
    if constraint.startswith("TG_TABLE_NAME"):
        expected = "postings" + constraint.split("'")[1]
        message = format_.replace("%", table, 1).replace("%", "UPDATE")
    else:
        expected = constraint.strip("'")
        message = format_.replace("%", "'INV 1'" if "invoice number" in format_ else "42")
    assert constraint_name(Refusal(message)) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            'new row for relation "orders_102041" violates check constraint "orders_amount_positive_102041"',
            "orders_amount_positive",
        ),
        (
            'insert or update on table "refunds_102060" violates foreign key constraint "refunds_entry_fkey_102060"',
            "refunds_entry_fkey",
        ),
        (
            'duplicate key value violates unique constraint "journal_entries_idempotency_key_unique_102012"',
            "journal_entries_idempotency_key_unique",
        ),
        ('new row for relation "entry_hashes" violates check constraint "entry_hashes_sha256"', "entry_hashes_sha256"),
    ],
)
def test_a_quoted_constraint_comes_back_without_its_shard_id(message, expected):
    assert constraint_name(Refusal(message)) == expected


def test_a_name_the_server_sends_wins_and_loses_its_shard_id():
    assert constraint_name(Refusal("anything", "orders_capture_matches_status")) == "orders_capture_matches_status"
    assert constraint_name(Refusal("anything", "platforms_pkey_102008")) == "platforms_pkey"
    assert constraint_name(Refusal("anything", "postings_102394_append_only")) == "postings_append_only"


def test_an_unknown_refusal_has_no_name():
    assert constraint_name(Refusal("something else went wrong")) is None
