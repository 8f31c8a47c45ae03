"""The signature check in README.md's receiver accepts what the service signs and refuses a
tampered or replayed delivery. (tests/api/test_webhooks.py also runs that receiver for real.)"""

from __future__ import annotations

import time

from ledger.webhooks import signature_header
from tests.readme_receiver import load_readme_receiver, readme_receiver_source

SECRET = "whsec_readme"


def test_the_readme_receiver_is_about_ten_lines_of_standard_library() -> None:
    source = readme_receiver_source()
    lines = [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 22
    imported = {w for line in lines if line.startswith(("import", "from")) for w in line.replace(",", " ").split()}
    assert imported & {"ledger", "api", "splitledger", "requests"} == set()


def test_the_readme_verifier_accepts_a_delivery_signed_by_the_service() -> None:
    receiver = load_readme_receiver(SECRET)
    body = b'{"id":"evt_0123456789abcdef01234567","type":"order.captured","data":{}}'
    header = signature_header(SECRET, int(time.time()), body)
    assert receiver.verify(header, body, SECRET.encode()) is True


def test_the_readme_verifier_refuses_tampered_forged_and_replayed_deliveries() -> None:
    receiver = load_readme_receiver(SECRET)
    body = b'{"id":"evt_0123456789abcdef01234567","type":"payout.paid","data":{"amount":100000}}'
    now = int(time.time())
    header = signature_header(SECRET, now, body)
    assert receiver.verify(header, body.replace(b"100000", b"900000"), SECRET.encode()) is False  # tampered
    assert receiver.verify(header, body, b"whsec_guessed") is False  # not signed with the endpoint's secret
    replayed = signature_header(SECRET, now - 301, body)  # a genuine delivery, sent again five minutes later
    assert receiver.verify(replayed, body, SECRET.encode()) is False
    moved = replayed.replace(f"t={now - 301}", f"t={now}")  # its timestamp refreshed: the MAC no longer fits
    assert receiver.verify(moved, body, SECRET.encode()) is False
    assert receiver.verify("", body, SECRET.encode()) is False
