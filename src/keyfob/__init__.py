"""keyfob — session management for Python web apps.

One engine, three strategies chosen by one setting (``jwt``, ``database``, ``hybrid``)::

    from keyfob import Keyfob
    fob = Keyfob(strategy="hybrid", secret=["new", "old"], store="sqlite:///keyfob.db")
"""

from __future__ import annotations

from ._clock import FakeClock
from ._session import Event, RequestMeta, Session, SessionInfo
from ._verifier import Verifier
from .engine import AuthResult, Issued, Keyfob
from .errors import (
    ConfigError,
    CSRFError,
    ImpersonationRefused,
    InvalidToken,
    KeyfobError,
    SessionError,
    SessionExpired,
    SessionRevoked,
    StepUpRequired,
    StoreUnavailable,
    TokenReuseDetected,
    UpdateRefused,
)
from .settings import Settings
from .strategies import SessionLimitReached

__version__ = "0.1.0"

__all__ = [
    "AuthResult",
    "CSRFError",
    "ConfigError",
    "Event",
    "FakeClock",
    "ImpersonationRefused",
    "InvalidToken",
    "Issued",
    "Keyfob",
    "KeyfobError",
    "RequestMeta",
    "Session",
    "SessionError",
    "SessionExpired",
    "SessionInfo",
    "SessionLimitReached",
    "SessionRevoked",
    "Settings",
    "StepUpRequired",
    "StoreUnavailable",
    "TokenReuseDetected",
    "UpdateRefused",
    "Verifier",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "keyfob"
del _name, _obj
