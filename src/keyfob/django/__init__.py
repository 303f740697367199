"""keyfob for Django: a drop-in session engine, a middleware for all three strategies, admin.

```python
# settings.py
INSTALLED_APPS = [..., "django.contrib.auth", "django.contrib.sessions", "keyfob.django"]
SESSION_ENGINE = "keyfob.django.session_backend"        # Django's sessions, on keyfob's store
KEYFOB = {"SECRET": "...", "IDLE_TIMEOUT": 3600}        # env fallbacks: KEYFOB_SECRET, ...
```

See ``docs/quickstart/django.md``.
"""

from __future__ import annotations

from typing import Any

from ._api import (
    asign_in,
    asign_out,
    csrf_token,
    current_session_id,
    current_user_id,
    list_sessions,
    revoke_other_sessions,
    revoke_session,
    sign_in,
    sign_out,
)
from .conf import get_fob

__all__ = ["asign_in", "asign_out", "csrf_token", "current_session_id", "current_user_id", "get_fob",
           "list_sessions", "revoke_other_sessions", "revoke_session", "sign_in", "sign_out"]


def __getattr__(name: str) -> Any:
    if name == "SessionStore":
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "SESSION_ENGINE = 'keyfob.django' is not a session engine; "
            "set SESSION_ENGINE = 'keyfob.django.session_backend'")
    raise AttributeError(f"module 'keyfob.django' has no attribute {name!r}")
