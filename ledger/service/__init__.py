"""The use cases: each runs inside units of work from ``ledger.store.Database`` and reaches DOKU only
through the ``PaymentGateway`` port (``ledger.service.gateway``), so a test can hand it a fake."""
