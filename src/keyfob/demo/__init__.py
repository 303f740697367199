"""The keyfob demo: a small FastAPI app with sign-up, sign-in ("keep me signed in" or a browser
session), a session page, a device list, password change (re-enter the password first when the
sign-in is older than 10 minutes) and sign-out, for each strategy; an admin console (the first
account is the admin: every user's sessions, sign a user out everywhere, bump a user's version, change
a user's role without a sign-out, act as a user until "stop", keyfob's event log); and a page
comparing the strategies with the bundled ``keyfob bench`` numbers. Run it with ``keyfob demo``.

Needs the ``demo`` extra: ``pip install 'keyfob[demo]'``.
"""

from __future__ import annotations

from ._app import create_app

__all__ = ["create_app"]
