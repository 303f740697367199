"""Time as a seam: every decision takes ``now`` (epoch seconds, float) from a Clock.

keyfob uses plain epoch seconds internally (cheaper than ``datetime`` on the
per-request path) and converts at the edges (``Session.expires`` etc.).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]

system_clock: Clock = time.time


def to_datetime(ts: float) -> datetime:
    """Epoch seconds → aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def iso(ts: float) -> str:
    """Epoch seconds → ISO-8601 with milliseconds and ``Z``, the shape Auth.js uses for ``expires``."""
    return to_datetime(ts).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


class FakeClock:
    """A clock for tests and simulations: starts at ``start`` and moves only when told."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
