"""keyfob's Django settings: ``KEYFOB = {...}`` in settings.py, the environment as fallback.

```python
# settings.py
INSTALLED_APPS = [..., "django.contrib.auth", "django.contrib.sessions", "keyfob.django"]
SESSION_ENGINE = "keyfob.django.session_backend"
KEYFOB = {"SECRET": env("KEYFOB_SECRET"), "IDLE_TIMEOUT": 3600, "MAX_SESSIONS_PER_USER": 5}
```

Each key of ``KEYFOB`` is a :class:`keyfob.Settings` field, upper- or lower-case (``STRATEGY``,
``SECRET``, ``STORE``, ``MAX_AGE``, ``IDLE_TIMEOUT``, ``ABSOLUTE_TIMEOUT``, ``MAX_SESSIONS_PER_USER``,
``COOKIE_NAME``…). A key that is absent falls back to its ``KEYFOB_*`` environment variable
(``Settings.from_env``), then to a Django-derived default:

* ``STORE``: the project's ``DATABASES["default"]`` (SQLite file or PostgreSQL), so keyfob's
  tables sit next to Django's and ``manage.py migrate`` creates them;
* ``SECRET``: ``SECRET_KEY`` when it is strong enough (64+ random characters), else an
  ``ImproperlyConfigured`` that says to set ``KEYFOB["SECRET"]``;
* ``MAX_AGE``: ``SESSION_COOKIE_AGE``; ``COOKIE_SECURE``: ``SESSION_COOKIE_SECURE`` when True.

``STORE_OPTIONS`` (a dict) goes to the store's constructor, e.g. ``{"table_prefix": "app_"}`` on SQL
stores or ``{"prefix": "app:"}`` on Redis; ``CLOCK``, ``ON_EVENT``, ``ON_TOKEN``, ``ON_SESSION``,
``FEED`` and ``AUTO_MIGRATE`` go to :class:`keyfob.Keyfob`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from ..engine import Keyfob
from ..errors import ConfigError
from ..settings import Settings
from ..stores import SessionRecord, open_store
from ._loop import home

__all__ = ["astarted_fob", "build_fob", "get_fob", "plain_get", "reset", "started_fob",
           "store_url_from_databases", "sync_get", "use_fob"]

SyncGet = Callable[[bytes], SessionRecord | None]
_ENGINE_KEYS = ("clock", "feed", "on_token", "on_session", "on_event", "auto_migrate", "store_options")
_FIELDS = frozenset(Settings.__dataclass_fields__) | {"secret"}


def store_url_from_databases(databases: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """keyfob's store URL for Django's ``DATABASES["default"]`` (SQLite file or PostgreSQL)."""
    dbs = django_settings.DATABASES if databases is None else databases
    db = dbs.get("default") or {}
    engine = str(db.get("ENGINE", ""))
    name = str(db.get("NAME") or "")
    if engine.endswith("sqlite3"):
        if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            raise ImproperlyConfigured(
                "keyfob cannot share an in-memory SQLite database with Django: its store opens its "
                "own connection. Give DATABASES['default'] a file NAME (also under TEST['NAME']), "
                "or set KEYFOB['STORE'] (e.g. 'sqlite:////var/lib/app/keyfob.db').")
        return "sqlite:///" + os.path.abspath(name)
    if engine.endswith(("postgresql", "postgis")):
        user = quote(str(db.get("USER") or ""), safe="")
        password = quote(str(db.get("PASSWORD") or ""), safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = str(db.get("HOST") or "127.0.0.1")
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgresql://{auth}{host}{port}/{quote(name, safe='')}"
    raise ImproperlyConfigured(
        f"keyfob has no store for Django's {engine or 'unset'} database backend; set KEYFOB['STORE'] "
        "to a keyfob store URL (sqlite:///…, postgresql://…, redis://…).")


def _options() -> tuple[dict[str, Any], dict[str, Any]]:
    """(Settings overrides, Keyfob engine keywords) from ``settings.KEYFOB``."""
    raw = getattr(django_settings, "KEYFOB", None) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured("settings.KEYFOB must be a dict, e.g. KEYFOB = {'STRATEGY': 'database'}")
    fields: dict[str, Any] = {}
    engine: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).lower()
        if name in _ENGINE_KEYS:
            engine[name] = value
        elif name in _FIELDS:
            fields[name] = value
        else:
            raise ImproperlyConfigured(
                f"settings.KEYFOB has an unknown key {key!r}; the keys are keyfob.Settings fields "
                f"({', '.join(sorted(k.upper() for k in _FIELDS))}) and "
                f"{', '.join(k.upper() for k in _ENGINE_KEYS)}")
    return fields, engine


def build_fob() -> Keyfob:
    """A new engine from Django's settings (``get_fob`` caches one per process)."""
    return _build()[0]


def _build() -> tuple[Keyfob, SyncGet | None]:
    fields, engine = _options()
    env = os.environ
    derived = "store" not in fields and not env.get("KEYFOB_STORE")
    if derived:
        fields["store"] = store_url_from_databases()
    if "secret" not in fields and "secrets" not in fields and not (
            env.get("KEYFOB_SECRET") or env.get("AUTH_SECRET")):
        fields["secret"] = django_settings.SECRET_KEY
    if "max_age" not in fields and not env.get("KEYFOB_MAX_AGE"):
        fields["max_age"] = django_settings.SESSION_COOKIE_AGE
    if "update_age" not in fields and not env.get("KEYFOB_UPDATE_AGE"):
        max_age = fields.get("max_age") or _seconds_or_none(env.get("KEYFOB_MAX_AGE"))
        if isinstance(max_age, timedelta):
            max_age = max_age.total_seconds()
        # roll at most daily, and never less often than the session lives
        if isinstance(max_age, int | float) and not isinstance(max_age, bool):
            fields["update_age"] = min(86400.0, max_age)
    if "cookie_secure" not in fields and django_settings.SESSION_COOKIE_SECURE:
        fields["cookie_secure"] = True
    try:
        settings = Settings.from_env(**fields)
        store_options = engine.pop("store_options", None) or {}
        store = open_store(settings.store, **store_options) if store_options else None
        fob = Keyfob(settings, store=store, **engine)
        # the per-request read without the loop: SQLite's primary-key lookup (a store attribute, not in
        # the protocol, hence getattr; SessionStore.load() is 106k instructions with it, 187k through
        # home.run: callgrind, 500 loads, 2026-12-02), or (PostgreSQL that is Django's own database) the
        # same SELECT on Django's connection
        reader: SyncGet | None = getattr(fob.store, "get_sync", None)
        if reader is None and derived:
            from ._django_db import django_connection_get

            reader = django_connection_get(fob.store)
        return fob, reader
    except ConfigError as exc:
        hint = ""
        if "secret" in str(exc):
            hint = (" — set KEYFOB = {'SECRET': ...} in settings.py (or the KEYFOB_SECRET environment "
                    "variable) to the output of `keyfob secret`; Django's SECRET_KEY is used only when "
                    "it has 64+ random characters")
        raise ImproperlyConfigured(f"keyfob: {exc}{hint}") from exc


def _seconds_or_none(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None  # Settings.from_env reports the bad value


class _State:
    def __init__(self) -> None:
        self.fob: Keyfob | None = None
        self.sync_get: SyncGet | None = None
        self.started = False
        self.pinned = False  # use_fob(): never rebuilt from settings
        self.db_name: object = None
        self.lock = threading.Lock()


_state = _State()


def _db_name() -> object:
    return (django_settings.DATABASES.get("default") or {}).get("NAME")


@contextmanager
def use_fob(fob: Keyfob) -> Iterator[Keyfob]:
    """Make ``fob`` the engine ``keyfob.django`` uses, instead of one built from ``settings.KEYFOB``
    (tests; an app that builds its own :class:`keyfob.Keyfob`). Restores the previous one after."""
    with _state.lock:
        saved = (_state.fob, _state.sync_get, _state.db_name, _state.started, _state.pinned)
        _state.fob, _state.sync_get, _state.started, _state.pinned = (
            fob, getattr(fob.store, "get_sync", None), False, True)
        home.pump = fob.feed is not None
    try:
        yield fob
    finally:
        with _state.lock:
            _state.fob, _state.sync_get, _state.db_name, _state.started, _state.pinned = saved


def get_fob() -> Keyfob:
    """The process's :class:`keyfob.Keyfob`, built from ``settings.KEYFOB`` on first use.

    Rebuilt when ``KEYFOB`` or ``DATABASES`` change (``override_settings``, or the test runner
    switching ``DATABASES["default"]["NAME"]`` to the test database).
    """
    fob = _state.fob
    if fob is not None and (_state.pinned or _state.db_name == _db_name()):
        return fob
    with _state.lock:
        if _state.fob is None or _state.db_name != _db_name():
            _discard()
            fob, reader = _build()
            _state.fob, _state.sync_get, _state.started = fob, reader, False
            home.pump = fob.feed is not None
            _state.db_name = _db_name()
        return _state.fob


def started_fob() -> Keyfob:
    """``get_fob()``, started (schema migrated when ``auto_migrate``, revocation view running)."""
    fob = get_fob()
    if not _state.started:
        home.run(fob.start())
        home.pump = fob.feed is not None  # known once started (the store may hand out its feed then)
        _state.started = _state.fob is fob
    return fob


async def astarted_fob() -> Keyfob:
    """``started_fob`` for async code."""
    fob = get_fob()
    if not _state.started:
        await home.arun(fob.start())
        home.pump = fob.feed is not None
        _state.started = _state.fob is fob
    return fob


def sync_get() -> SyncGet | None:
    """The current engine's store lookup as a plain call for sync code (SQLite's, or PostgreSQL's on
    Django's own connection), or None: use the home loop."""
    get_fob()
    return _state.sync_get


def plain_get() -> SyncGet | None:
    """The store's own plain lookup (SQLite), safe from async code too; None: await the store.

    Not :func:`sync_get`: the read on Django's connection is blocking, sync-only Django code."""
    return getattr(get_fob().store, "get_sync", None)  # a store attribute, not in the protocol


def _discard() -> None:
    old, _state.fob, _state.sync_get, _state.started = _state.fob, None, None, False
    if old is not None:
        try:
            home.run(old.close())
        except Exception:  # closing a store whose server is gone must not stop a rebuild
            pass


def reset() -> None:
    """Close and forget the cached engine (the next ``get_fob()`` builds a new one)."""
    with _state.lock:
        _discard()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if not _state.pinned and setting in ("KEYFOB", "DATABASES", "SECRET_KEY", "SESSION_COOKIE_AGE",
                                         "SESSION_COOKIE_SECURE"):
        reset()


def _forget_after_fork() -> None:
    # the parent's engine holds the parent's connections and loop: never use (or close) them here
    _state.fob, _state.sync_get, _state.db_name, _state.lock = None, None, None, threading.Lock()
    _state.started = False


setting_changed.connect(_on_setting_changed)
os.register_at_fork(after_in_child=_forget_after_fork)
