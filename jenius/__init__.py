"""DOKU Jenius Pay adapter: signing, wire messages, httpx client, and a simulated DOKU. Imports no
``ledger`` or ``api`` module (tests/jenius/test_boundaries.py checks)."""
