"""``SESSION_ENGINE = "keyfob.django.session_backend"``: Django sessions on keyfob's store.

A drop-in replacement for ``django.contrib.sessions.backends.db``: ``django.contrib.auth``'s
``login``, ``logout``, ``cycle_key``, ``update_session_auth_hash``, anonymous sessions,
``SESSION_COOKIE_AGE``, ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` and ``SESSION_SAVE_EVERY_REQUEST``
work unchanged. What changes, behind the same ``SessionBase`` API:

* the session key in the cookie is a 256-bit keyfob token; the store keeps only its SHA-256;
* each row records its device (IP, user agent, last seen) and, from login on, its user
  (``_auth_user_id``), so ``keyfob sessions list/revoke/revoke-user``, ``fob.revoke_user()``,
  the Django admin's session list, ``max_sessions_per_user`` and ``idle_timeout`` /
  ``absolute_timeout`` apply to it. Anonymous sessions are indexed under a per-session
  placeholder user (``~anonymous:<id>``) and never count toward a user's limit;
* ``manage.py clearsessions`` and ``keyfob cleanup`` delete the same expired rows.

Lifetimes: the row expires at Django's expiry (``get_expiry_age()`` from the last save),
capped by keyfob's ``absolute_timeout`` (counted from login); a load refuses a row that is past
it, past its absolute deadline or idle longer than ``idle_timeout`` (``last_seen`` is written at
most every ``update_age``, or ``idle_timeout / 4``).

Sync and async: the sync methods (``load``, ``save``...) run keyfob's async store calls on the
process's home event loop, in the calling thread (``keyfob.django._loop``); the async ones
(``aload``, ``asave``...) await the same coroutines — directly when the home loop is the ASGI
server's (``keyfob.django.asgi``), else through the home loop without blocking the caller's loop.
The per-request read on SQLite is a plain primary-key lookup, with no loop at all; so is the read
on PostgreSQL when it is Django's own database (on Django's connection: ``keyfob.django._django_db``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured

from ..engine import Keyfob
from ..stores import SessionRecord
from ..strategies import _lifetimes as life
from ..strategies._base import looks_like_opaque_token, new_id, new_token, token_hash
from ..strategies._stored import add_session
from ._loop import home
from ._request import current_meta
from .conf import astarted_fob, plain_get, started_fob, sync_get

__all__ = ["ANONYMOUS_PREFIX", "SessionStore"]

log = logging.getLogger("keyfob")

#: user_id of a session before login: one placeholder per session (no shared index, no limit).
ANONYMOUS_PREFIX = "~anonymous:"
_JSON_SERIALIZER = "django.contrib.sessions.serializers.JSONSerializer"
_ENCODED = "_django_encoded"


def _engine() -> Keyfob:
    return _checked(started_fob())


async def _aengine() -> Keyfob:
    return _checked(await astarted_fob())


def _checked(fob: Keyfob) -> Keyfob:
    if fob.settings.strategy != "database":
        raise ImproperlyConfigured(
            f"SESSION_ENGINE = 'keyfob.django.session_backend' stores database-strategy sessions, but "
            f"KEYFOB['STRATEGY'] is {fob.settings.strategy!r}. Set KEYFOB['STRATEGY'] = 'database', or "
            "keep Django's SESSION_ENGINE and use keyfob.django.middleware.KeyfobMiddleware for "
            f"{fob.settings.strategy} sessions.")
    return fob


def _user_of(data: Mapping[str, Any]) -> str | None:
    uid = data.get(SESSION_KEY)
    return None if uid is None or uid == "" else str(uid)


def _is_anonymous(rec: SessionRecord) -> bool:
    return rec.user_id.startswith(ANONYMOUS_PREFIX)


async def _evicted(session_id: str) -> None:
    """An evicted session's row is gone already (``add_session`` deleted it): nothing more to do."""


class SessionStore(SessionBase):
    """Django's ``SessionBase`` over keyfob's store (database strategy)."""

    _session_key: str | None  # SessionBase's validating property (an annotation only: no attribute)

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._record: SessionRecord | None = None  # the row this object last read or wrote

    @property
    def keyfob_id(self) -> str | None:
        """The stored session's public id (as ``keyfob sessions list`` and the admin show it), or None."""
        if self._record is None and self.session_key is not None:
            self._get_session()
        return self._record.id if self._record is not None else None

    # -- storage format -------------------------------------------------------------------------
    def _stored(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON the store keeps: the session dict itself (Django's default JSON serializer), or
        the dict encoded by ``SESSION_SERIALIZER`` for any other serializer."""
        if django_settings.SESSION_SERIALIZER == _JSON_SERIALIZER:
            return dict(data)
        return {_ENCODED: self.encode(dict(data))}

    def _decoded(self, rec: SessionRecord) -> dict[str, Any]:
        stored = rec.data
        if _ENCODED in stored and len(stored) == 1:
            return dict(self.decode(stored[_ENCODED]))
        return dict(stored)

    def _get_new_session_key(self) -> str:
        return new_token()  # 256 random bits: no uniqueness query needed

    async def _aget_new_session_key(self) -> str:
        return new_token()

    @staticmethod
    def _expires(now: float, age: float) -> float:
        return now + age if math.isfinite(age) else now

    # -- reading -------------------------------------------------------------------------------
    def _key_hash(self, key: str | None) -> bytes | None:
        if key is None or not looks_like_opaque_token(key):
            return None  # truncated, tampered or foreign (another backend's) key: no store read
        return token_hash(key)

    def _live(self, fob: Keyfob, rec: SessionRecord | None, now: float) -> SessionRecord | None:
        if rec is None or rec.retired_at is not None:
            return None
        if not life.is_live(rec, now, fob.settings.idle_timeout):
            return None
        return rec

    def load(self) -> dict[str, Any]:
        fob = _engine()
        h = self._key_hash(self.session_key)
        if h is None:
            self._session_key = None
            return {}
        get = sync_get()  # SQLite, or PostgreSQL on Django's connection: no loop at all
        rec = get(h) if get is not None else home.run(fob.store.get(h))
        now = fob.clock()
        rec = self._live(fob, rec, now)
        if rec is None:
            self._record = None
            self._session_key = None
            return {}
        if life.needs_touch(rec.last_seen_at, now, fob.settings):
            rec = home.run(self._touch(fob, rec, now))
        self._record = rec
        return self._decoded(rec)

    async def aload(self) -> dict[str, Any]:
        fob = await _aengine()
        h = self._key_hash(self.session_key)
        if h is None:
            self._session_key = None
            return {}
        get = plain_get()  # SQLite's lookup is a plain call in any thread or loop; others are awaited
        rec = get(h) if get is not None else await home.arun(fob.store.get(h))
        now = fob.clock()
        rec = self._live(fob, rec, now)
        if rec is None:
            self._record = None
            self._session_key = None
            return {}
        if life.needs_touch(rec.last_seen_at, now, fob.settings):
            rec = await home.arun(self._touch(fob, rec, now))
        self._record = rec
        return self._decoded(rec)

    @staticmethod
    async def _touch(fob: Keyfob, rec: SessionRecord, now: float) -> SessionRecord:
        """Record activity (device list, idle timeout); the expiry stays Django's."""
        await fob.store.touch(rec.token_hash, seen=now, expires=rec.expires_at)
        return dataclasses.replace(rec, last_seen_at=now)

    def exists(self, session_key: str | None) -> bool:
        fob = _engine()
        h = self._key_hash(session_key)
        if h is None:
            return False
        return self._live(fob, home.run(fob.store.get(h)), fob.clock()) is not None

    async def aexists(self, session_key: str | None) -> bool:
        fob = await _aengine()
        h = self._key_hash(session_key)
        if h is None:
            return False
        return self._live(fob, await home.arun(fob.store.get(h)), fob.clock()) is not None

    # -- writing -------------------------------------------------------------------------------
    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    async def acreate(self) -> None:
        while True:
            self._session_key = await self._aget_new_session_key()
            try:
                await self.asave(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        fob = _engine()
        data = self._get_session(no_load=must_create)
        age = self.get_expiry_age()
        self._record = home.run(self._write(fob, self.session_key, data, age, must_create))

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return await self.acreate()
        fob = await _aengine()
        data = await self._aget_session(no_load=must_create)
        age = await self.aget_expiry_age()
        self._record = await home.arun(self._write(fob, self.session_key, data, age, must_create))

    def _new_record(self, fob: Keyfob, h: bytes, user: str | None, data: Mapping[str, Any], now: float,
                    age: float) -> SessionRecord:
        sid = new_id()
        absolute = life.absolute_deadline(now, fob.settings)
        expires = self._expires(now, age)
        meta = current_meta()
        return SessionRecord(
            token_hash=h, id=sid, user_id=user if user is not None else ANONYMOUS_PREFIX + sid,
            created_at=now, last_seen_at=now,
            expires_at=expires if absolute is None else min(expires, absolute),
            absolute_expires_at=absolute, authenticated_at=now if user is not None else None,
            ip=meta.ip if meta else None, user_agent=meta.user_agent if meta else None,
            data=self._stored(data),
        )

    async def _insert(self, fob: Keyfob, rec: SessionRecord, now: float) -> None:
        if _is_anonymous(rec):
            await fob.store.add(rec)
            return
        # a signed-in session: the per-user limit applies (evict the least recently active, or refuse)
        await add_session(fob.ctx, rec, now, revoke=_evicted)
        fob.ctx.emit("created", rec.id, rec.user_id, {"via": "django"})

    async def _write(self, fob: Keyfob, key: str, data: Mapping[str, Any], age: float,
                     must_create: bool) -> SessionRecord:
        now = fob.clock()
        h = self._key_hash(key)
        if h is None:  # a key this backend did not mint (set by hand): never store it
            raise CreateError if must_create else UpdateError
        user = _user_of(data)
        if must_create:
            rec = self._new_record(fob, h, user, data, now, age)
            try:
                await self._insert(fob, rec, now)
            except ValueError as exc:  # the token hash exists already
                raise CreateError from exc
            return rec
        old = self._record if self._record is not None and self._record.token_hash == h else (
            await fob.store.get(h))
        if old is None or old.retired_at is not None:
            raise UpdateError  # deleted meanwhile (logged out elsewhere, revoked): never resurrect it
        if user is not None and old.user_id != user:
            # signed in without a new key (Django's login() cycles it, custom code may not): the
            # session becomes the user's, under the user's limit, with a fresh public id
            if await fob.store.delete(old.id) == 0:
                raise UpdateError
            rec = self._new_record(fob, h, user, data, now, age)
            await self._insert(fob, rec, now)
            return rec
        expires = self._expires(now, age)
        if old.absolute_expires_at is not None:
            expires = min(expires, old.absolute_expires_at)
        new = dataclasses.replace(old, data=self._stored(data), expires_at=expires, last_seen_at=now)
        if not await fob.store.replace(h, new, now=now, keep_old=False):
            raise UpdateError
        return new

    def cycle_key(self) -> None:
        """A new key for the same data; the old key is deleted *first*, so a user at
        ``max_sessions_per_user`` never loses another device to their own key change."""
        data = self._session
        key = self.session_key
        if key:
            self.delete(key)
        self._session_cache = data
        self.create()
        self._session_cache = data

    async def acycle_key(self) -> None:
        data = await self._aget_session()
        key = self.session_key
        if key:
            await self.adelete(key)
        self._session_cache = data
        await self.acreate()
        self._session_cache = data

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        h = self._key_hash(session_key)
        if h is not None:
            home.run(self._delete(_engine(), h))
        if self._record is not None and self._record.token_hash == h:
            self._record = None

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        h = self._key_hash(session_key)
        if h is not None:
            await home.arun(self._delete(await _aengine(), h))
        if self._record is not None and self._record.token_hash == h:
            self._record = None

    @staticmethod
    async def _delete(fob: Keyfob, h: bytes) -> None:
        rec = await fob.store.get(h)
        if rec is not None and await fob.store.delete(rec.id) and not _is_anonymous(rec):
            fob.ctx.emit("signed_out", rec.id, rec.user_id, {"via": "django"})

    @classmethod
    def clear_expired(cls) -> None:
        fob = _engine()
        home.run(fob.cleanup())

    @classmethod
    async def aclear_expired(cls) -> None:
        fob = await _aengine()
        await home.arun(fob.cleanup())
