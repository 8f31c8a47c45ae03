"""Request rate limits: one token bucket per API key (``/v1``) and per DOKU Client-Id (notifications).

Rule: a bucket holds at most ``burst`` requests and refills at ``per_s``; a request that finds it
empty is answered 429 ``rate_limited`` with ``Retry-After`` (whole seconds until a token is back),
before the key is verified or the body read, so a flood costs neither a hash nor a query. Buckets
live in the process (with several workers each has its own: the effective limit is per worker);
at most ``max_keys`` are kept, least recently used first out, so random keys cannot exhaust memory.
The key is a digest of what was presented (the bearer token is never kept).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBuckets:
    def __init__(
        self, per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_s > 0 and burst >= 1")
        self.per_s = per_s
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead (a token is taken), else the seconds until one is back."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).digest()
        now = self.clock()
        tokens, at = self._buckets.pop(digest, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.per_s
        self._buckets[digest] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """``Retry-After`` in whole seconds, never 0 (a client told 0 would retry at once)."""
    return str(max(1, math.ceil(wait_s)))
