"""When does a session end, and when should it roll: pure functions of (deadlines, now, settings).

The rule itself is :func:`keyfob.stores._protocol.passed_deadline` (it sits in the store layer so
stores may count live rows with it; arrows point down); this module is the strategies' only door
to it. No I/O; ``now`` is passed in (computed once per request by the caller).
"""

from __future__ import annotations

from ..errors import SessionExpired
from ..settings import Settings
from ..stores import LiveRow, SessionRecord
from ..stores._protocol import is_live, passed_deadline

__all__ = ["absolute_deadline", "check_alive", "check_deadlines", "is_live", "needs_touch", "new_expiry",
           "touch_interval"]


def check_deadlines(now: float, s: Settings, *, expires_at: float, last_seen_at: float,
                    absolute_expires_at: float | None) -> None:
    """Raise SessionExpired (with the deadline and its reason) once any deadline has passed."""
    passed = passed_deadline(now, expires_at=expires_at, last_seen_at=last_seen_at,
                             absolute_expires_at=absolute_expires_at, idle_timeout=s.idle_timeout)
    if passed is not None:
        raise SessionExpired(expired_at=passed[1], reason=passed[0])


def check_alive(rec: SessionRecord | LiveRow, now: float, s: Settings) -> None:
    """Raise SessionExpired if the stored session is past any of its deadlines."""
    check_deadlines(now, s, expires_at=rec.expires_at, last_seen_at=rec.last_seen_at,
                    absolute_expires_at=rec.absolute_expires_at)


def touch_interval(s: Settings) -> float:
    """How often a live session is written back: ``update_age``, or more often if an idle timeout needs it."""
    if s.idle_timeout is None:
        return s.update_age
    return min(s.update_age, s.idle_timeout / 4)


def needs_touch(last_seen_at: float, now: float, s: Settings) -> bool:
    """Auth.js throttling: write at most once per ``update_age`` (or per idle_timeout/4)."""
    return now - last_seen_at >= touch_interval(s)


def new_expiry(now: float, absolute: float | None, s: Settings) -> float:
    """Rolling expiry of a session seen at ``now``: ``max_age``, capped by the idle timeout and the
    absolute deadline, so the stored ``expires_at`` is the real end of life (``cleanup`` deletes
    idle sessions by it, Redis sets its TTL from it, the cookie's Max-Age follows it)."""
    exp = now + s.max_age
    if s.idle_timeout is not None:
        exp = min(exp, now + s.idle_timeout)
    return exp if absolute is None else min(exp, absolute)


def absolute_deadline(created: float, s: Settings) -> float | None:
    return None if s.absolute_timeout is None else created + s.absolute_timeout
