"""Pure functions of (record, now, settings): when does a session expire, when should it roll.

No I/O; ``now`` is passed in (computed once per request by the caller).
"""

from __future__ import annotations

from ..errors import SessionExpired
from ..settings import Settings
from ..stores import SessionRecord
from ..stores._protocol import is_live


def check_alive(rec: SessionRecord, now: float, s: Settings) -> None:
    """Raise SessionExpired if the stored session is past any of its deadlines.

    Idle is checked before ``expires_at`` because ``new_expiry`` folds the idle deadline into it.
    """
    if rec.absolute_expires_at is not None and now >= rec.absolute_expires_at:
        raise SessionExpired(expired_at=rec.absolute_expires_at, reason="absolute")
    if s.idle_timeout is not None and now - rec.last_seen_at >= s.idle_timeout:
        raise SessionExpired(expired_at=rec.last_seen_at + s.idle_timeout, reason="idle")
    if now >= rec.expires_at:
        raise SessionExpired(expired_at=rec.expires_at, reason="max_age")


def is_alive(rec: SessionRecord, now: float, s: Settings) -> bool:
    """``check_alive`` as a predicate (live = not retired and within every deadline).

    The stores count live sessions for ``max_sessions_per_user`` with the same function.
    """
    return is_live(rec, now, s.idle_timeout)


def touch_interval(s: Settings) -> float:
    """How often a live session is written back: ``update_age``, or more often if an idle timeout needs it."""
    if s.idle_timeout is None:
        return s.update_age
    return min(s.update_age, s.idle_timeout / 4)


def needs_touch(rec: SessionRecord, now: float, s: Settings) -> bool:
    """Auth.js throttling: write at most once per ``update_age`` (or per idle_timeout/4)."""
    return now - rec.last_seen_at >= touch_interval(s)


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
