"""/metrics shows the service, not one worker: with ``serve --workers 2`` every scrape, whichever
worker answers it, counts the requests both workers served."""

from __future__ import annotations

import re
import time

import httpx

from tests.integration.test_cli import _serve, _stop, _wait_healthy, free_port


def health_count(text: str) -> int:
    found = re.findall(r'splitledger_http_requests_total\{method="GET",route="/health",status="200"\} (\S+)', text)
    return int(sum(float(v) for v in found))


def test_every_scrape_of_a_two_worker_server_counts_both_workers(database_url, tmp_path) -> None:
    port = free_port()
    proc = _serve(
        {
            "DATABASE_URL": database_url,
            "SPLITLEDGER_WORKERS": "2",
            "SPLITLEDGER_SEALER_INTERVAL_S": "0",
            "SPLITLEDGER_SEAL_KEY_FILE": str(tmp_path / "seal.key"),
            "SPLITLEDGER_METRICS_TOKEN": "scraper",
        },
        port,
    )
    try:
        _wait_healthy(proc, port)
        base = f"http://127.0.0.1:{port}"
        scraper = {"Authorization": "Bearer scraper"}
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
            before = health_count(client.get("/metrics", headers=scraper).text)
            sent = 0
            for _ in range(60):  # fresh connections: granian spreads them over both workers
                with httpx.Client(base_url=base, timeout=10, trust_env=False) as one:
                    assert one.get("/health").status_code == 200
                    sent += 1
            time.sleep(0.2)
            scrapes = []
            for _ in range(8):
                with httpx.Client(base_url=base, timeout=10, trust_env=False) as one:
                    r = one.get("/metrics", headers=scraper)
                    assert r.status_code == 200
                    scrapes.append(health_count(r.text) - before)
        assert scrapes == [sent] * len(scrapes), scrapes  # a per-worker registry would show about half
        assert "splitledger_capture_batch_size" in r.text and "splitledger_capture_queue_depth" in r.text
    finally:
        _stop(proc)
