"""Prometheus metrics for the service, not a worker (prometheus-client).

Rule: with several workers (``splitledger serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR``), every
worker writes its samples to files in that directory and ``/metrics`` merges all of them, so any
worker's scrape shows the whole service; with one process the in-memory registry is used. Counters
only go up; latency and batch sizes are fixed-bucket histograms; gauges (queue depth, sealer lag) are
summed over the live workers (``livesum``) or, for shared values such as the sealer's lag, the
largest (``max``).

Names: ``splitledger_http_requests_total{method,route,status}``,
``splitledger_http_request_duration_seconds``, ``splitledger_<event>_total{outcome}`` for domain
events (captures, refunds, notifications, payment_requests, status_checks, …),
``splitledger_capture_batch_size``, ``splitledger_capture_queue_depth``, ``splitledger_sealer_*``.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double every counter and nobody graphs them

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Gauges whose value is the same for the whole service (read from the database), not per worker.
_SHARED_GAUGES = {"sealer_unsealed_entries", "sealer_seconds_behind"}


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._build()

    def _build(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._events: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self.requests = Counter(
            "splitledger_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "splitledger_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "splitledger_capture_batch_size",
            "Captures per group-committed transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

        self.group_size = Histogram(
            "splitledger_group_commit_size",
            "Refunds and payouts per group-committed transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def count(self, name: str, outcome: str, n: int = 1) -> None:
        """Domain events: captures, notification outcomes, reconciliation exceptions, …"""
        counter = self._events.get(name)
        if counter is None:
            with self._lock:
                counter = self._events.get(name) or Counter(
                    f"splitledger_{name}", f"{name.replace('_', ' ')} by outcome.", ["outcome"], registry=self.registry
                )
                self._events[name] = counter
        counter.labels(outcome).inc(n)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_group(self, size: int) -> None:
        self.group_size.observe(size)

    def gauge(self, name: str, value: float) -> None:
        """A value that goes up and down (queue depth, sealer lag)."""
        gauge = self._gauges.get(name)
        if gauge is None:
            with self._lock:
                gauge = self._gauges.get(name) or Gauge(
                    f"splitledger_{name}",
                    name.replace("_", " "),
                    registry=self.registry,
                    multiprocess_mode="max" if name in _SHARED_GAUGES else "livesum",
                )
                self._gauges[name] = gauge
        gauge.set(value)

    def render(self) -> str:
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry).decode()
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged).decode()


def configure_metrics() -> None:
    """Called by the app factory in every worker: prometheus-client picks its storage when it is
    imported, which may be before ``serve`` set ``PROMETHEUS_MULTIPROC_DIR``; switch to the shared files
    now and rebuild the metrics on them."""
    if multiprocess_dir() is not None and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        METRICS._build()


def worker_exited(pid: int | None = None) -> None:
    """Drop a finished worker's live gauges (its counters stay: they happened)."""
    if multiprocess_dir() is not None:
        mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


METRICS = Metrics()
