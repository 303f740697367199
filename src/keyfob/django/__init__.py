"""keyfob for Django: a drop-in session engine, a middleware for all three strategies, admin.

```python
# settings.py
INSTALLED_APPS = [..., "django.contrib.auth", "django.contrib.sessions", "keyfob.django"]
SESSION_ENGINE = "keyfob.django.session_backend"        # Django's sessions, on keyfob's store
KEYFOB = {"SECRET": "...", "IDLE_TIMEOUT": 3600}        # env fallbacks: KEYFOB_SECRET, ...
```

See ``docs/quickstart/django.md``. Submodules import Django; this package imports it lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_fob"]


def get_fob() -> Any:
    """The process's :class:`keyfob.Keyfob`, built from ``settings.KEYFOB`` (see ``keyfob.django.conf``)."""
    from .conf import get_fob as _get_fob

    return _get_fob()


def __getattr__(name: str) -> Any:
    if name == "SessionStore":
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "SESSION_ENGINE = 'keyfob.django' is not a session engine; "
            "set SESSION_ENGINE = 'keyfob.django.session_backend'")
    raise AttributeError(f"module 'keyfob.django' has no attribute {name!r}")
