"""DOKU's Split Settlement instruction: FIX rupiah on the net, the rest to the platform's account."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.split import (
    Allocation,
    CartPolicy,
    FeePolicy,
    SettlementInstructionInvalid,
    allocate,
    build_settlement_instruction,
)
from tests.unit.test_split_allocation import SELLERS, allocations, three_seller_cart

FAST = settings(max_examples=200, deadline=None)
PLATFORM_ACCOUNT = "SBA-PLATFORM"

bank_ids = st.dictionaries(st.sampled_from(SELLERS), st.sampled_from([f"SBA-{s.upper()}" for s in SELLERS]))


@FAST
@given(allocation=allocations(), seller_bank_ids=bank_ids)
def test_the_instruction_sums_exactly_to_the_net(allocation: Allocation, seller_bank_ids: dict[str, str]) -> None:
    nets = {s.seller_id: s.net for s in allocation.sellers}
    unbanked = sum(net for seller, net in nets.items() if seller not in seller_bank_ids)
    remainder = allocation.platform + unbanked
    if remainder < 0:
        with pytest.raises(SettlementInstructionInvalid) as raised:
            build_settlement_instruction(allocation, seller_bank_ids, PLATFORM_ACCOUNT)
        assert [p.code for p in raised.value.problems] == ["platform_remainder_negative"]
        return
    instruction = build_settlement_instruction(allocation, seller_bank_ids, PLATFORM_ACCOUNT)
    assert sum(entry["value"] for entry in instruction) == allocation.net == allocation.gross - allocation.fee
    for entry in instruction:
        assert entry["type"] == "FIX"
        assert type(entry["value"]) is int and entry["value"] > 0
    accounts = [entry["bank_account_settlement_id"] for entry in instruction]
    assert len(accounts) == len(set(accounts))
    # Each account gets exactly the nets of the sellers paid into it; the platform's gets the rest.
    expected: dict[str, int] = {}
    for seller, account in seller_bank_ids.items():
        if seller in nets:
            expected[account] = expected.get(account, 0) + nets[seller]
    expected[PLATFORM_ACCOUNT] = expected.get(PLATFORM_ACCOUNT, 0) + remainder
    assert {entry["bank_account_settlement_id"]: entry["value"] for entry in instruction} == {
        account: value for account, value in expected.items() if value
    }


def example1() -> Allocation:
    return allocate(187_500, three_seller_cart(), CartPolicy(commission_bps=500), FeePolicy(bps=150))


def test_sellers_without_a_doku_account_are_paid_through_the_platforms_account() -> None:
    instruction = build_settlement_instruction(example1(), {"andi": "SBA-ANDI", "budi": "SBA-BUDI"}, PLATFORM_ACCOUNT)
    assert instruction == [
        {"bank_account_settlement_id": "SBA-ANDI", "value": 85_975, "type": "FIX"},
        {"bank_account_settlement_id": "SBA-BUDI", "value": 60_799, "type": "FIX"},
        {"bank_account_settlement_id": PLATFORM_ACCOUNT, "value": 6_562 + 31_351, "type": "FIX"},
    ]


def test_the_instruction_encodes_as_dokus_additional_info() -> None:
    instruction = build_settlement_instruction(example1(), {"citra": "SBA-CITRA"}, PLATFORM_ACCOUNT)
    body = msgspec.json.encode({"additional_info": {"settlement": instruction}})
    assert msgspec.json.decode(body) == {
        "additional_info": {
            "settlement": [
                {"bank_account_settlement_id": "SBA-CITRA", "value": 31_351, "type": "FIX"},
                {"bank_account_settlement_id": PLATFORM_ACCOUNT, "value": 184_687 - 31_351, "type": "FIX"},
            ]
        }
    }


def test_a_platform_that_bears_more_fee_than_it_earns_cannot_cover_the_sellers() -> None:
    # No commission, the platform bears DOKU's fee: its share is -2 813, and every seller has
    # an account, so nothing is left to cover it.
    allocation = allocate(187_500, three_seller_cart(), CartPolicy(commission_bps=0), FeePolicy(bps=150))
    assert allocation.platform == -2_813
    banked = {"andi": "SBA-ANDI", "budi": "SBA-BUDI", "citra": "SBA-CITRA"}
    with pytest.raises(SettlementInstructionInvalid) as raised:
        build_settlement_instruction(allocation, banked, PLATFORM_ACCOUNT)
    assert [p.code for p in raised.value.problems] == ["platform_remainder_negative"]
    # With citra unbanked her net covers it: the platform's account gets 33 001 - 2 813.
    instruction = build_settlement_instruction(allocation, {"andi": "SBA-ANDI", "budi": "SBA-BUDI"}, PLATFORM_ACCOUNT)
    assert instruction[-1] == {"bank_account_settlement_id": PLATFORM_ACCOUNT, "value": 30_188, "type": "FIX"}


def test_a_remainder_needs_a_platform_account() -> None:
    with pytest.raises(SettlementInstructionInvalid) as raised:
        build_settlement_instruction(example1(), {}, "")
    assert [p.code for p in raised.value.problems] == ["missing_platform_account"]


def test_a_seller_with_nothing_to_receive_gets_no_entry() -> None:
    allocation = allocate(
        187_500, three_seller_cart(), CartPolicy(commission_bps=0, seller_commission_bps={"citra": 10_000}), FeePolicy()
    )
    instruction = build_settlement_instruction(allocation, {"citra": "SBA-CITRA"}, PLATFORM_ACCOUNT)
    assert instruction == [{"bank_account_settlement_id": PLATFORM_ACCOUNT, "value": 187_500, "type": "FIX"}]
