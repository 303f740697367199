"""The Django project the ``django`` group serves: one settings dict per session backend, one view.

``KFBENCH_APP`` (JSON) holds ``{"kind": "django", "backend": ..., "database": {...}, "keyfob": {...}}``:

* ``backend`` — ``db``, ``cached_db`` (local-memory cache in front of the table), ``signed_cookies``
  (Django's own backends), ``keyfob_engine`` (``SESSION_ENGINE = "keyfob.django.session_backend"``,
  the drop-in engine) or ``keyfob_<strategy>`` (``keyfob.django.middleware.KeyfobMiddleware``);
* ``database`` — Django's ``DATABASES["default"]`` (SQLite file, or PostgreSQL with a per-run
  database created for the run). Connections are persistent (``CONN_MAX_AGE``) for every backend: with
  Django's default of 0, each request would open a PostgreSQL connection and every backend that
  touches the database would be measured on that instead.

The request measured is the smallest that loads a session: ``GET /p`` reads ``request.session``
(or, under keyfob's middleware, ``request.keyfob_session``) and answers 401 without a signed-in
session, else a small JSON body. ``GET /login`` writes a session (``request.session["uid"] = ...``)
so the harness gets a cookie the way a browser would. Only the session app and its middleware are
installed: no ``django.contrib.auth`` user lookup, which would cost every backend the same query.

``python -m keyfob._bench.django_app migrate`` creates the tables (``manage.py migrate``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from django.urls import path

__all__ = ["application", "configure", "settings_for", "urlpatterns"]

_MODE = {"keyfob_mw": False}


def _json(body: dict[str, Any], status: int = 200) -> HttpResponse:
    response = JsonResponse(body, status=status)
    response["Content-Length"] = str(len(response.content))  # as CommonMiddleware would
    return response


def login(request: HttpRequest) -> HttpResponse:
    from ._core import SESSION_DATA, USER_ID

    request.session["uid"] = USER_ID
    request.session["data"] = dict(SESSION_DATA)
    return _json({"ok": True})


def protected(request: HttpRequest) -> HttpResponse:
    if _MODE["keyfob_mw"]:
        session = getattr(request, "keyfob_session", None)
        uid = session.user_id if session is not None else None
    else:
        uid = request.session.get("uid")
    if not uid:
        return _json({"error": "unauthenticated"}, status=401)
    return _json({"ok": True, "user": uid})


def health(request: HttpRequest) -> HttpResponse:
    return _json({"ok": True})


urlpatterns = [path("p", protected), path("login", login), path("health", health)]

_ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
    "keyfob_engine": "keyfob.django.session_backend",
}


def settings_for(conf: dict[str, Any]) -> dict[str, Any]:
    """Django settings for one benchmark server (or for ``migrate``: every app's tables)."""
    from ._core import SECRET

    backend = conf.get("backend", "db")
    database = {**conf["database"], "CONN_MAX_AGE": None}
    apps = ["django.contrib.sessions"]
    middleware = ["django.contrib.sessions.middleware.SessionMiddleware"]
    settings: dict[str, Any] = {}
    if backend.startswith("keyfob") or conf.get("with_keyfob"):
        apps.append("keyfob.django")
        settings["KEYFOB"] = dict(conf.get("keyfob") or {})
    if backend.startswith("keyfob_") and backend != "keyfob_engine":
        # the middleware offers a lazy request.user (get_user_model): the auth app must be installed;
        # the view never touches request.user, so no backend pays a user query
        apps[:0] = ["django.contrib.contenttypes", "django.contrib.auth"]
        middleware = ["keyfob.django.middleware.KeyfobMiddleware"]
    else:
        settings["SESSION_ENGINE"] = _ENGINES[backend]
    return {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["*"],
        "SECRET_KEY": SECRET,
        "ROOT_URLCONF": "keyfob._bench.django_app",
        "INSTALLED_APPS": apps,
        "MIDDLEWARE": middleware,
        "DATABASES": {"default": database},
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        "USE_TZ": True,
        "SESSION_COOKIE_SECURE": False,
        "LOGGING_CONFIG": None,
        **settings,
    }


def configure(conf: dict[str, Any]) -> None:
    from django.conf import settings

    import django

    _MODE["keyfob_mw"] = (
        "django.contrib.sessions.middleware.SessionMiddleware" not in settings_for(conf)["MIDDLEWARE"]
    )
    settings.configure(**settings_for(conf))
    django.setup()


def application() -> Any:
    """The WSGI application for ``KFBENCH_APP`` (a gunicorn factory call)."""
    from django.core.wsgi import get_wsgi_application

    configure(json.loads(os.environ["KFBENCH_APP"]))
    return get_wsgi_application()


def _migrate() -> None:
    from django.core.management import call_command

    configure(json.loads(os.environ["KFBENCH_APP"]))
    call_command("migrate", verbosity=0, interactive=False)


if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        _migrate()
    else:
        raise SystemExit("usage: python -m keyfob._bench.django_app migrate  (with KFBENCH_APP set)")
