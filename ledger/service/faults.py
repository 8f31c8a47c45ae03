"""Fault injection at the phase boundaries of money-moving requests (for tests only).

A point is named ``<phase>:before_commit``, ``<phase>:after_commit`` (phases are named by each use
case; the last one is ``finish``; the group commit of notifications is ``capture_batch``) or
``gateway:after_call`` (DOKU has acted, nothing of its answer is stored yet). An armed point fails
once, either by raising ``InjectedCrash`` (in-process tests) or by ending the process at once with
``os._exit`` (like ``kill -9``: no cleanup, no answer). Nothing is armed unless a test or
``SPLITLEDGER_FAULTS`` says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal


class InjectedCrash(Exception):
    """The process 'died' at this point (raised instead of exiting)."""

    code = "injected_crash"


class Faults:
    def __init__(self, points: Iterable[str] = (), *, mode: Literal["raise", "exit"] = "raise") -> None:
        self.armed = set(points)
        self.mode = mode
        self.seen: list[str] = []

    @classmethod
    def from_spec(cls, spec: str, mode: str = "raise") -> Faults:
        return cls((p.strip() for p in spec.split(",") if p.strip()), mode="exit" if mode == "exit" else "raise")

    def arm(self, point: str) -> None:
        self.armed.add(point)

    def hit(self, point: str) -> None:
        self.seen.append(point)
        if point not in self.armed:
            return
        self.armed.discard(point)
        if self.mode == "exit":
            os._exit(137)
        raise InjectedCrash(point)


NO_FAULTS = Faults()
