"""Prometheus text-format metrics kept in process memory (no client library needed).

Rule: counters only go up; latency is a fixed-bucket histogram so scrapes are cheap and mergeable.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from itertools import accumulate

from ledger.service.capture import CaptureBatcher

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency_buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.events: dict[tuple[str, str], int] = defaultdict(int)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # One bucket per request (the first bound it fits under, or +Inf); render() accumulates.
        self.requests[(method, route, str(status))] += 1
        self.latency_buckets[(method, route)][bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum[(method, route)] += seconds

    def count(self, name: str, outcome: str, n: int = 1) -> None:
        """Domain events: captures, notification outcomes, reconciliation exceptions, …"""
        self.events[(name, outcome)] += n

    def render(self) -> str:
        out = [
            "# HELP splitledger_http_requests_total HTTP requests by method, route and status.",
            "# TYPE splitledger_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(f'splitledger_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
        out += [
            "# HELP splitledger_http_request_duration_seconds HTTP request latency.",
            "# TYPE splitledger_http_request_duration_seconds histogram",
        ]
        for (method, route), counts in sorted(self.latency_buckets.items()):
            buckets = list(accumulate(counts))
            labels = f'method="{method}",route="{route}"'
            for bound, n in zip(BUCKETS, buckets, strict=False):  # buckets has one more: +Inf
                out.append(f'splitledger_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}')
            out.append(f'splitledger_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {buckets[-1]}')
            out.append(
                f"splitledger_http_request_duration_seconds_sum{{{labels}}} {self.latency_sum[(method, route)]:.6f}"
            )
            out.append(f"splitledger_http_request_duration_seconds_count{{{labels}}} {buckets[-1]}")
        names = sorted({name for name, _ in self.events})
        for name in names:
            out.append(f"# HELP splitledger_{name}_total {name.replace('_', ' ')} by outcome.")
            out.append(f"# TYPE splitledger_{name}_total counter")
            for (event, outcome), n in sorted(self.events.items()):
                if event == name:
                    out.append(f'splitledger_{name}_total{{outcome="{outcome}"}} {n}')
        return "\n".join(out) + "\n"

    def render_batches(self, batcher: CaptureBatcher) -> str:
        """The group commit of notifications: transactions committed and the members they carried."""
        return (
            "# HELP splitledger_capture_batches_total Group-committed transactions of DOKU notifications.\n"
            "# TYPE splitledger_capture_batches_total counter\n"
            f"splitledger_capture_batches_total {batcher.batches}\n"
            "# HELP splitledger_capture_batch_members_total Notifications and status checks they carried.\n"
            "# TYPE splitledger_capture_batch_members_total counter\n"
            f"splitledger_capture_batch_members_total {batcher.captures}\n"
        )


METRICS = Metrics()
