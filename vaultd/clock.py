"""Time, injected. Only the composition root (vaultd/app.py) builds a SystemClock; tests advance a FakeClock."""

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall time, for TTLs and timestamps)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts)."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to. `advance(s)` moves both readings."""

    def __init__(self, now: float = 1_700_000_000.0):
        self._now = now
        self._monotonic = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self._now += seconds
        self._monotonic += seconds
