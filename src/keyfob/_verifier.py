"""Verifier-only mode: check hybrid access tokens in another service, without keyfob's store.

```python
from keyfob import Verifier

verifier = Verifier(jwks_url="https://auth.example.com/.well-known/jwks.json",
                    feed="redis://cache.internal:6379/0")
async with verifier:                  # fetch the keys, subscribe to the revocation feed
    claims = verifier.verify(token)   # sync, no I/O: signature + claims + two dict lookups
```

**Keys.** Either a JWKS URL — the issuing app's ``GET /.well-known/jwks.json`` (``Keyfob(...,
jwks=True)``): EdDSA public keys only, fetched with the standard library (``urllib.request``, in a
worker thread, no redirects, https unless the host is loopback), cached and fetched again every
``jwks_ttl`` seconds, and at once — at most once per ``refetch_interval`` — when a token names a
``kid`` the cache does not hold (a key rotation). Or explicit ``keys``: a
:class:`keyfob.tokens.KeyRing` or a JWKS dict. HS256 keys are accepted only this way, since
holding one means holding the issuer's secret.

**Revocation.** With ``feed`` — the URL of the Redis or PostgreSQL store the issuing app uses —
the verifier keeps the same in-memory revocation view every keyfob node keeps (revoked session
ids, per-user minimum token versions), current through the same Redis pub/sub or PostgreSQL
LISTEN/NOTIFY feed. It reads the store only to load that view when the feed (re)connects, never
per token. While the feed is down, :meth:`Verifier.verify` raises ``StoreUnavailable`` (fail
closed: answer 503): it never answers from a view it knows may be stale. A token minted under
another store epoch (before the store lost its data) is refused (``SessionRevoked``).

Without a feed there is no revocation check at all: a revoked session's access tokens are still
accepted until they expire, so revocation is bounded by the issuer's ``access_ttl`` (10 minutes
by default). Choose that knowingly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import json
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Mapping
from typing import Any
from urllib.parse import urlsplit

from ._clock import Clock, system_clock
from .errors import ConfigError, InvalidToken, SessionRevoked, StoreUnavailable
from .stores import RevocationFeed, SessionStore, open_feed, open_store
from .strategies import RevocationView
from .strategies.hybrid import access_identity, access_verifier
from .tokens import JWSKey, JWSVerifier, KeyRing

__all__ = ["Verifier"]

log = logging.getLogger("keyfob.verifier")

_MAX_JWKS_BYTES = 64 * 1024
_MAX_HEADER_CHARS = 1024


class Verifier:
    """Checks hybrid access tokens the way a keyfob node does, from keys and a revocation feed.

    Give exactly one of ``jwks_url`` and ``keys``. ``audience`` must be the issuer's (keyfob's
    default is ``"keyfob"``). ``leeway`` (seconds) accepts tokens that expired that long ago, for
    clock skew between hosts; keep it at most the issuer's ``clock_skew`` (30 s by default), for
    which the issuer keeps revocations past the tokens' expiry. Call :meth:`start` (or use
    ``async with``) before :meth:`verify`, and :meth:`close` at shutdown.

    ``feed`` is a store URL (``redis://...``, ``postgresql://...``) or a
    :class:`~keyfob.stores.RevocationFeed`; with a feed object, also pass the ``store`` it goes
    with (an object or URL; the view is loaded from it when the feed connects). The store is
    only read, never migrated.
    """

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        keys: KeyRing | Mapping[str, Any] | None = None,
        feed: str | RevocationFeed | None = None,
        store: SessionStore | str | None = None,
        audience: str = "keyfob",
        leeway: float = 0,
        clock: Clock | None = None,
        jwks_ttl: float = 300,
        refetch_interval: float = 10,
        timeout: float = 5,
        insecure_http: bool = False,
    ) -> None:
        if (jwks_url is None) == (keys is None):
            raise ConfigError("a Verifier needs exactly one of jwks_url and keys",
                              hint="jwks_url='https://<issuer>/.well-known/jwks.json' or keys=KeyRing / JWKS")
        if not isinstance(audience, str) or not audience:
            raise ConfigError("audience must be a non-empty string",
                              hint="use the issuer's audience (default 'keyfob')")
        for name, value, low in (("leeway", leeway, 0.0), ("jwks_ttl", jwks_ttl, 1.0),
                                 ("refetch_interval", refetch_interval, 0.0), ("timeout", timeout, 0.1)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < low:
                raise ConfigError(f"{name} must be a number of seconds >= {low:g}")
        self.jwks_url = jwks_url
        self.audience = audience
        self.leeway = float(leeway)
        self.clock: Clock = clock or system_clock
        self.jwks_ttl = float(jwks_ttl)
        self.refetch_interval = float(refetch_interval)
        self.timeout = float(timeout)
        self._checker: JWSVerifier | None = None
        self._ring: KeyRing | None = None
        if jwks_url is not None:
            _check_jwks_url(jwks_url, insecure_http=insecure_http)
        else:
            assert keys is not None
            self._install(keys if isinstance(keys, KeyRing) else _ring_from_jwks(keys, public_only=False))
        self.feed, self.store = _open_feed(feed, store)
        self.view: RevocationView | None = (
            RevocationView(self.store, self.feed, self.clock) if self.store is not None else None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refetching = False
        self._last_refetch = -math.inf  # time.monotonic() of the last fetch an unknown kid triggered
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Fetch the JWKS (raises ``StoreUnavailable`` if it cannot) and subscribe to the feed.

        Idempotent. A feed that cannot connect yet does not raise: :meth:`verify` fails closed
        until it is up and the view is loaded.
        """
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        if self.jwks_url is not None:
            await self.refresh_keys()
            self._spawn(self._keep_keys_fresh())
        if self.view is not None:
            await self.view.start()
        self._started = True

    async def close(self) -> None:
        """Stop the background tasks and the feed, and close the store's connections."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.view is not None:
            await self.view.close()
        if self.store is not None:
            await self.store.close()
        self._loop = None
        self._started = False

    async def __aenter__(self) -> Verifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the check --------------------------------------------------------------------------------
    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unrevoked access token. Sync; no I/O.

        Raises ``InvalidToken`` (bad signature, unknown key, wrong ``typ`` or audience, a refresh
        token, garbage), ``SessionExpired``, ``SessionRevoked`` (with a feed), and
        ``StoreUnavailable`` when revocation cannot be checked (feed down, view not loaded yet) or
        no keys are loaded — answer 503 then, never let the request through.
        """
        checker = self._checker
        if checker is None:
            raise StoreUnavailable("the verifier has no keys yet",
                                   hint="await verifier.start() (or use `async with verifier`) first")
        try:
            claims = checker.verify(token, now=self.clock(), leeway=self.leeway)
        except InvalidToken:
            if self.jwks_url is not None:
                self._refetch_if_unknown_kid(token)
            raise
        sid, sub, ver = access_identity(claims)
        view = self.view
        if view is not None:
            if not view.live:
                raise StoreUnavailable("the revocation feed is down, so revocations cannot be checked",
                                       hint="answer 503; the verifier resyncs when the feed is back")
            epoch = claims.get("ep")  # None: an issuer from before store epochs
            if epoch is not None and epoch != view.epoch:  # minted under another epoch: before a wipe
                view.suspect_epoch()  # ...or after one this verifier has not seen yet: look soon
                raise SessionRevoked("the session store was reset since this session began",
                                     hint="sign in again")
            if view.check_live(sid, sub, ver):
                raise SessionRevoked()
        return claims

    # -- keys ------------------------------------------------------------------------------------------
    @property
    def key_ring(self) -> KeyRing | None:
        """The keys tokens are checked with now (None before the first JWKS fetch)."""
        return self._ring

    def _install(self, ring: KeyRing) -> None:
        self._checker = access_verifier(ring, audience=self.audience)
        self._ring = ring

    async def refresh_keys(self) -> None:
        """Fetch the JWKS now and use its keys. Raises ``StoreUnavailable`` if it cannot."""
        if self.jwks_url is None:
            raise ConfigError("this Verifier has explicit keys, not a jwks_url")
        doc = await asyncio.to_thread(_fetch_json, self.jwks_url, self.timeout)
        try:
            ring = _ring_from_jwks(doc, public_only=True)
        except ConfigError as exc:
            raise StoreUnavailable(f"the JWKS is not usable: {exc.message}",
                                   hint="check that jwks_url is the issuer's /.well-known/jwks.json") from exc
        self._install(ring)

    async def _keep_keys_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.jwks_ttl)
            await self._refresh_quietly()

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh_keys()
        except StoreUnavailable as exc:
            log.warning("could not refresh the JWKS; keeping the keys already loaded (%s)", exc)
        finally:
            self._refetching = False

    def _refetch_if_unknown_kid(self, token: str) -> None:
        """A token names an EdDSA key we do not hold: maybe a rotation. Fetch the JWKS (rate-limited)."""
        loop, ring = self._loop, self._ring
        if loop is None or ring is None or self._refetching:
            return
        if time.monotonic() - self._last_refetch < self.refetch_interval:
            return
        kid = _eddsa_kid(token)
        if kid is None or ring.find(kid) is not None:
            return
        self._refetching = True
        self._last_refetch = time.monotonic()
        loop.call_soon_threadsafe(self._spawn, self._refresh_quietly())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _open_feed(feed: str | RevocationFeed | None,
               store: SessionStore | str | None) -> tuple[RevocationFeed | None, SessionStore | None]:
    if feed is None:
        if store is not None:
            raise ConfigError("a store without a feed is never read by a Verifier",
                              hint="pass feed= (the store URL) to check revocations, or drop store=")
        return None, None
    if isinstance(feed, str):
        opened = open_feed(feed)
        if opened is None:
            raise ConfigError("this store URL has no revocation feed",
                              hint="use the issuer's redis:// or postgresql:// store URL")
        where: SessionStore | str = feed if store is None else store
        return opened, open_store(where) if isinstance(where, str) else where
    if store is None:
        raise ConfigError("a feed object needs the store it goes with (the view is loaded from it)",
                          hint="pass store= (a SessionStore or its URL)")
    return feed, open_store(store) if isinstance(store, str) else store


def _check_jwks_url(url: str, *, insecure_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if insecure_http or parts.hostname == "localhost" or _is_loopback(parts.hostname):
            return
        raise ConfigError("the JWKS URL is plain http: anyone on the path could swap the keys",
                          hint="use https, or pass insecure_http=True if the network is trusted")
    raise ConfigError("jwks_url must be an https:// URL", hint="the issuer's /.well-known/jwks.json")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ring_from_jwks(doc: Any, *, public_only: bool) -> KeyRing:
    """A key ring from a JWKS. ``public_only``: only EdDSA public keys (what a JWKS URL may give)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
        raise ConfigError("a JWKS is an object with a 'keys' list")
    keys: list[JWSKey] = []
    for jwk in doc["keys"]:
        if public_only and not (isinstance(jwk, Mapping) and jwk.get("kty") == "OKP"):
            continue  # an HS256 secret published in a JWKS is a leak, not a key to trust
        if isinstance(jwk, Mapping) and jwk.get("use", "sig") != "sig":
            continue
        keys.append(JWSKey.from_jwk(jwk))
    if not keys:
        raise ConfigError("the JWKS holds no usable key",
                          hint="the issuer needs Keyfob(..., jwks=True) for EdDSA access tokens")
    return KeyRing(keys)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an error: keys come from the configured URL only


_OPENER = urllib.request.build_opener(_NoRedirects)


def _fetch_json(url: str, timeout: float) -> Any:
    """GET ``url`` (blocking; run in a worker thread) and parse the JSON body (at most 64 KiB)."""
    where = urlsplit(url).netloc
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "keyfob"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(_MAX_JWKS_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise StoreUnavailable(f"the JWKS at {where} answered HTTP {exc.code}",
                               hint="check jwks_url and that the issuer is up") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise StoreUnavailable(f"cannot fetch the JWKS from {where} ({type(exc).__name__})",
                               hint="check jwks_url and that the issuer is up") from exc
    if len(body) > _MAX_JWKS_BYTES:
        raise StoreUnavailable(f"the JWKS at {where} is over {_MAX_JWKS_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise StoreUnavailable(f"the JWKS at {where} is not JSON") from exc


def _eddsa_kid(token: str) -> str | None:
    """The ``kid`` of a token's header if it claims EdDSA, else None (cheap; failures only)."""
    if type(token) is not str:
        return None
    head = token.partition(".")[0]
    if not head or len(head) > _MAX_HEADER_CHARS:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) and 0 < len(kid) <= 128 else None
