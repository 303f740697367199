"""The Flask apps the ``flask`` group serves (``gunicorn 'keyfob._bench.wsgi_apps:flask_app()'``).

``KFBENCH_APP`` (JSON) chooses the app:

* ``{"kind": "flask_login"}`` — the anchor: Flask's default signed-cookie session
  (``itsdangerous``) with Flask-Login, as its docs set it up: a ``LoginManager``, a
  ``user_loader`` (an in-memory dict here, the cheapest there is; a real app reads its users
  table), ``@login_required``. ``GET /login`` signs in (``login_user``) and sets the cookie. This
  anchor cannot revoke a session at all.
* ``{"kind": "flask_keyfob", "strategy": ..., "store": ..., "url": ..., ...}`` — the same view behind
  keyfob's Flask extension: ``KeyfobFlask(app, fob)``, ``@login_required``, ``current_session()``.
  The session is created by the parent process on the same store (its cookies come with the load).

Both answer ``GET /p`` with the same small JSON body and ``GET /health`` (readiness, open).
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["django_app", "flask_app"]


def _flask_login_app() -> Any:
    from flask import Flask, jsonify
    from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

    from ._core import SECRET, SESSION_DATA, USER_ID

    app = Flask("kfbench_flask_login")
    app.secret_key = SECRET
    manager = LoginManager(app)

    class User(UserMixin):
        def __init__(self, user_id: str, data: dict[str, Any]) -> None:
            self.id = user_id
            self.data = data

    users = {USER_ID: User(USER_ID, dict(SESSION_DATA))}

    @manager.user_loader
    def load_user(user_id: str) -> User | None:
        return users.get(user_id)

    @app.get("/login")
    def login() -> Any:
        login_user(users[USER_ID])
        return jsonify({"ok": True})

    @app.get("/p")
    @login_required
    def protected() -> Any:
        return jsonify({"ok": True, "user": current_user.id})

    @app.get("/health")
    def health() -> Any:
        return jsonify({"ok": True})

    return app


def _flask_keyfob_app(conf: dict[str, Any]) -> Any:
    from flask import Flask, jsonify

    from keyfob.flask import KeyfobFlask, current_session, login_required

    from .apps import build_fob

    app = Flask("kfbench_flask_keyfob")
    KeyfobFlask(app, build_fob(conf))

    @app.get("/p")
    @login_required
    def protected() -> Any:
        session = current_session()
        return jsonify({"ok": True, "user": session.user_id if session else None})

    @app.get("/health")
    def health() -> Any:
        return jsonify({"ok": True})

    return app


def flask_app() -> Any:
    """The Flask app ``KFBENCH_APP`` names (a gunicorn factory: ``module:flask_app()``)."""
    conf: dict[str, Any] = json.loads(os.environ.get("KFBENCH_APP", '{"kind": "flask_login"}'))
    if conf.get("kind") == "flask_login":
        return _flask_login_app()
    if conf.get("kind") == "flask_keyfob":
        return _flask_keyfob_app(conf)
    raise SystemExit(f"unknown Flask KFBENCH_APP kind {conf.get('kind')!r}")


def django_app() -> Any:
    """The Django WSGI application ``KFBENCH_APP`` configures (see :mod:`keyfob._bench.django_app`)."""
    from .django_app import application

    return application()
