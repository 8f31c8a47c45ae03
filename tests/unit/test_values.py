"""The VALUES lists the stores write many rows with on Citus (ledger/store/values.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.store.values import chunk_sizes, values_list


@given(rows=st.integers(min_value=0, max_value=5_000), per_chunk=st.integers(min_value=1, max_value=2_000))
def test_chunks_add_up_to_the_rows_and_are_powers_of_two_within_the_limit(rows: int, per_chunk: int) -> None:
    sizes = list(chunk_sizes(rows, per_chunk))
    assert sum(sizes) == rows
    assert all(size & (size - 1) == 0 and 0 < size <= per_chunk for size in sizes)
    assert sizes == sorted(sizes, reverse=True)
    # few distinct statement texts: one size per power of two at most, beyond the largest's repeats
    assert len(set(sizes)) <= per_chunk.bit_length()


def test_shared_columns_are_written_as_given_and_each_row_numbers_its_own_parameters() -> None:
    assert values_list(("$1", "text", "$2", "bigint"), 2, first=3) == (
        "($1, $3::text, $2, $4::bigint), ($1, $5::text, $2, $6::bigint)"
    )


def test_a_cast_may_be_a_chain_of_casts() -> None:
    assert values_list(("text::jsonb",), 1, first=1) == "($1::text::jsonb)"
