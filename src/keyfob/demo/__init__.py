"""The keyfob demo: a small FastAPI app with sign-up, sign-in, a session page, a device list,
password change and sign-out, for each strategy; an admin console (the first account is the admin:
every user's sessions, sign a user out everywhere, bump a user's version, keyfob's event log); and a
page comparing the strategies with the bundled ``keyfob bench`` numbers. Run it with ``keyfob demo``.

Needs the ``demo`` extra: ``pip install 'keyfob[demo]'``.
"""

from __future__ import annotations

from ._app import create_app

__all__ = ["create_app"]
