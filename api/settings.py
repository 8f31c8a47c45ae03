"""Service settings, read once from the environment (``SPLITLEDGER_*`` plus ``DATABASE_URL``).

Rule: every knob that DOKU has not confirmed (paths, fee, time windows) is a setting with a
documented default, never a constant buried in code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from jenius.client import DEFAULT_REFUND_PATH


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    data_dir: str | None = None
    auto_migrate: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    pool_min: int = 2
    pool_max: int = 10
    # The path DOKU POSTs notifications to; it must equal the Notification URL registered at DOKU
    # because DOKU signs it as Request-Target.
    notification_path: str = "/v1/doku/notifications"
    # How old a notification's Request-Timestamp may be. DOKU resends after +30 min, +6 h, +12 h and
    # operators resend by hand, so the window is generous; replays are harmless anyway because the
    # inbox and capture are idempotent. 0 disables the check.
    notification_max_age_s: int = 7 * 24 * 3600
    # DOKU defaults used when a platform has not configured its own.
    doku_base_url: str = "https://api-sandbox.doku.com"
    doku_refund_path: str = DEFAULT_REFUND_PATH  # DOKU's Jenius refund path is unconfirmed
    doku_reject_bad_response_signature: bool = True
    doku_timeout_s: float = 10.0
    # How often /health's view of DOKU's reachability is refreshed (0 = never probe).
    doku_probe_interval_s: float = 30.0
    # Orders still pending this long are checked with DOKU's status API (DOKU advises >= 60 s).
    status_check_after_s: int = 300
    status_check_interval_s: int = 60
    status_check_enabled: bool = True
    # Jenius settles T+2 working days; used by reconciliation for "still owed by DOKU".
    settlement_days: int = 2
    log_json: bool = True
    # How long a pooled connection may be waited for before the request answers 503.
    db_acquire_timeout_s: float = 2.0
    # Idempotency keys: how long an execution holds a key between its phases (a crashed process's
    # lease lapses after this), and how long finished keys are kept before they may be pruned.
    idempotency_lease_s: float = 60.0
    idempotency_retention_h: int = 24
    idempotency_prune_interval_s: int = 3600
    # Webhooks. Loopback URLs (http or https to 127.0.0.0/8, ::1, localhost) are refused unless
    # this is true: the demo and local sandboxes set it (SPLITLEDGER_WEBHOOKS_ALLOW_LOOPBACK=true).
    webhooks_allow_loopback: bool = False
    # The relay delivering the outbox in the background (off: events still accumulate, and are
    # delivered once a process with the relay on runs).
    webhook_relay_enabled: bool = True
    # Multiplies every retry delay (about 1 s, 5 s, 30 s, … 12 h) and the 3-day retry window:
    # tests set it small to run the whole schedule in seconds.
    webhook_backoff_scale: float = 1.0
    webhook_timeout_s: float = 10.0
    # How long a claimed delivery is leased to the process sending it (must exceed the timeout): a
    # process killed mid-delivery leaves a lease that lapses after this, then it is sent again.
    webhook_lease_s: float = 60.0
    # Commits of this process wake the relay at once; other processes' are seen this often.
    webhook_poll_interval_s: float = 1.0
    webhook_concurrency: int = 16
    # How long a verified API key is trusted without asking the database: a revoked key keeps
    # working at most this long in processes other than the one that revoked it.
    api_key_cache_ttl_s: float = 5.0
    # Fault injection for tests: phase boundaries that fail once (see ledger.service.faults);
    # fault_mode "exit" ends the process there like kill -9. Empty in production.
    faults: str = ""
    fault_mode: str = "raise"
    # Tamper evidence (api/sealing.py): the Ed25519 sealing key, and how often blocks are sealed
    # (0 = no sealer in this process; run it in one process of a deployment, any is fine).
    seal_key: str = ""
    seal_key_file: str = ""
    seal_retired_keys: str = ""
    sealer_interval_s: float = 1.0
    sealer_block_max: int = 5000
    # -- exposure and abuse (api.guards, api.keyring) ------------------------------------------
    # DOKU's base URL (the default above and each platform's) must be https; http is allowed only
    # to a loopback host (127.0.0.0/8, ::1, localhost) when this is on: the DOKU sandbox of tests
    # and of the demo. Never on in production.
    doku_allow_loopback_http: bool = False
    # /metrics answers only `Authorization: Bearer <metrics_token>`; empty = /metrics answers 401.
    metrics_token: str = ""
    # Token buckets per API key (requests under /v1) and per DOKU Client-Id (the notification
    # endpoint): `burst` requests at once, refilled at `per_s`; 429 rate_limited with Retry-After
    # beyond. Per process (each worker has its own). Off for the benchmarks (rate_limit_enabled).
    rate_limit_enabled: bool = True
    rate_limit_api_key_per_s: float = 100.0
    rate_limit_api_key_burst: int = 300
    rate_limit_notification_per_s: float = 200.0
    rate_limit_notification_burst: int = 1000
    # The key DOKU Secret Keys are encrypted with (AES-256-GCM): base64 of 32 bytes; several keys
    # comma-separated = the first encrypts, every one decrypts (rotation). Or a file of such keys, one a
    # line (mode 0600). With neither, the embedded PostgreSQL's default makes a key file beside its
    # data directory; with DATABASE_URL set, one of the two is required.
    secrets_key: str = ""
    secrets_key_file: str = ""
    # Group commit of DOKU's notifications (ledger.service.capture): the most members one
    # transaction carries, and how many such transactions may be in flight at once (each on its own
    # pooled connection, so keep it well below pool_max).
    capture_max_batch: int = 500
    capture_in_flight: int = 2
    # Group commit of refunds and payouts (ledger.service.groupcommit): the same two knobs.
    group_commit_max_batch: int = 200
    group_commit_in_flight: int = 2
    # How long a worker trusts its cached DOKU account (Client-Id -> platform and secret) before it
    # reads it again: a change made through another worker is seen within this time (one made
    # through this worker at once; a signature that fails against a cached secret is re-checked).
    gateway_cache_ttl_s: float = 2.0

    def __repr__(self) -> str:  # keys and tokens never reach a log line
        shown = {f: getattr(self, f) for f in self.__struct_fields__}
        shown.update({f: "***" for f in ("secrets_key", "metrics_token", "database_url") if shown[f]})
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(Settings):
        key = "DATABASE_URL" if field.name == "database_url" else f"SPLITLEDGER_{field.name.upper()}"
        if key not in env:
            continue
        raw = env[key]
        default = field.default
        if isinstance(default, bool):
            values[field.name] = _BOOL[raw.strip().lower()]
        elif isinstance(default, int):
            values[field.name] = int(raw)
        elif isinstance(default, float):
            values[field.name] = float(raw)
        else:
            values[field.name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    return msgspec.convert(values, Settings)
