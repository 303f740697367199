"""``keyfob doctor``: check a configuration and say what to fix.

Each check gives ``ok``, ``warn`` (worth knowing, not broken), ``fail`` (fix it) or ``skip``
(does not apply), a one-line summary, the next step, and details for ``--json``:

* ``secret`` — present, each one strong enough, and how rotation stands (newest first);
* ``settings`` — the rest of the KEYFOB_* configuration is valid;
* ``cookies`` — the attributes browsers will get for ``--origin`` (Secure, prefix, SameSite, Domain);
* ``store`` — reachable (timed), keyfob's tables in place; never creates a SQLite file;
* ``persistence`` — Redis: whether it keeps anything on disk (RDB ``save`` or AOF ``appendonly``);
  without it a restart signs everyone out and forgets every revocation;
* ``feed`` — jwt / hybrid: a live revocation round trip (subscribe, publish a revocation of a
  random id no session has, see it delivered), timed;
* ``clock`` — skew between this machine and the store's server (``TIME``, ``clock_timestamp()``).

Nothing here writes a session or changes a setting. The feed probe is the one message sent: a
revocation of ``doctor-<random>`` that expires in a few seconds (on SQLite, one row in the
revocation table, pruned by ``keyfob cleanup``).
"""

from __future__ import annotations

import asyncio
import os
import secrets as _secrets
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, KeyfobError, StoreUnavailable
from ..settings import MIN_SECRET_BYTES, Settings, secret_strength
from ..stores import RevocationFeed, SessionStore, open_feed, open_store
from ..web import is_local_development
from ._target import Target, sqlite_file, store_hint

__all__ = ["Check", "diagnose"]

Status = Literal["ok", "warn", "fail", "skip"]

# keyfob's own URL options, which the raw drivers used for the persistence and clock checks refuse
_KEYFOB_QUERY = {
    "prefix",
    "channel",
    "table_prefix",
    "pool_size",
    "pool_min",
    "pool_max",
    "listen_url",
    "connect_timeout",
    "socket_timeout",
}
_PLACEHOLDER = "kf-doctor-placeholder-" + "0123456789abcdef" * 3  # stands in for a weak secret


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: Status
    summary: str
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "hint": self.hint,
            "details": self.details,
        }


# -- secret ---------------------------------------------------------------------------------------------


def check_secret(raw: Sequence[str], *, source: str, secret_file: Path | None, max_age: float) -> Check:
    if not raw:
        return Check(
            "secret",
            "fail",
            "no secret is configured",
            hint="run `keyfob secret` and put the output in KEYFOB_SECRET",
        )
    strengths = [secret_strength(s) for s in raw]
    details: dict[str, Any] = {
        "count": len(raw),
        "source": source,
        "entropy_bytes": strengths,
        "required_bytes": MIN_SECRET_BYTES,
    }
    weak = [i + 1 for i, n in enumerate(strengths) if n < MIN_SECRET_BYTES]
    if weak:
        which = ", ".join(f"#{i}" for i in weak)
        verb = "is" if len(weak) == 1 else "are"
        label = "the secret is" if len(raw) == 1 else f"secret {which} (newest first) {verb}"
        return Check(
            "secret",
            "fail",
            f"{label} weak: about {min(strengths)} bytes of entropy, keyfob needs {MIN_SECRET_BYTES}",
            hint="run `keyfob secret` for a strong one; to rotate without signing everyone out, put it "
            "first and keep the old one after it: KEYFOB_SECRET=<new>,<old>",
            details=details,
        )
    if secret_file is not None and secret_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check(
            "secret",
            "warn",
            f"{secret_file} is readable by other users",
            hint=f"chmod 600 {secret_file}",
            details=details,
        )
    if len(set(raw)) != len(raw):
        return Check(
            "secret",
            "warn",
            "the same secret is listed twice",
            hint="list each secret once, newest first",
            details=details,
        )
    if len(raw) == 1:
        return Check(
            "secret",
            "ok",
            f"one strong secret ({strengths[0]} bytes of entropy)",
            hint=None,
            details={**details, "rotation": "to rotate: KEYFOB_SECRET=<new>,<old>; drop <old> after max_age"},
        )
    days = max_age / 86400
    return Check(
        "secret",
        "ok",
        f"{len(raw)} strong secrets: rotation in progress (#1 signs new tokens, the other "
        f"{len(raw) - 1} only verify)",
        hint=f"drop the old secret(s) once tokens made with them have expired (max_age: {days:g} days)",
        details={**details, "rotation": "in progress"},
    )


# -- cookies --------------------------------------------------------------------------------------------


def check_cookies(settings: Settings, origin: str | None) -> Check:
    from ..engine import Keyfob

    given = origin is not None
    origin = (origin or "http://localhost").rstrip("/")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return Check(
            "cookies",
            "fail",
            f"{origin!r} is not an origin",
            hint="pass --origin as scheme://host[:port], e.g. https://app.example",
        )
    host = parts.hostname
    fob = Keyfob(settings, store="memory://", feed=None, auto_migrate=False)
    local = is_local_development(parts.scheme, parts.netloc)
    secure = settings.cookie_secure if settings.cookie_secure is not None else not local
    profile = fob.profile(secure)
    specs = [profile.session] + ([profile.refresh] if settings.strategy == "hybrid" else [])
    cookies = [
        {
            "name": s.name,
            "secure": s.secure,
            "httponly": s.httponly,
            "samesite": s.samesite,
            "path": s.path,
            "domain": s.domain,
        }
        for s in specs
    ]
    details: dict[str, Any] = {"origin": origin, "cookies": cookies}
    problems: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    if parts.scheme == "http" and not local:
        problems.append(
            (
                f"{origin} is plain http on a host that is not this machine: the session cookie would travel "
                "in clear text" + ("" if not secure else ", and browsers drop Secure cookies set over http"),
                "serve the site over https (and pass --origin https://...)",
            )
        )
    if parts.scheme == "https" and not secure:
        problems.append(
            (
                "cookie_secure is False on an https site: the cookie may leak over http",
                "unset cookie_secure (KEYFOB_COOKIE_SECURE) so keyfob sends Secure cookies",
            )
        )
    domain = settings.cookie_domain
    if domain is not None:
        bare = domain.lstrip(".").lower()
        if host.lower() != bare and not host.lower().endswith("." + bare):
            problems.append(
                (
                    f"cookie_domain {domain!r} does not cover {host}: browsers reject the cookie",
                    f"set cookie_domain to {host} or a parent domain of it, or unset it",
                )
            )
        else:
            warnings.append(
                (
                    f"cookie_domain {domain!r} shares the cookie with every subdomain of {bare}",
                    "unset cookie_domain for a host-only __Host- cookie unless subdomains need it",
                )
            )
    if settings.cookie_samesite == "none":
        warnings.append(
            (
                "SameSite=None: browsers send the cookie on cross-site requests; only the CSRF "
                "check stands in the way",
                "use SameSite=Lax unless another site must embed you",
            )
        )
    if not given:
        warnings.append(
            (
                "no --origin given: checked as http://localhost (development)",
                "pass --origin https://your.site to check what browsers there will get",
            )
        )
    names = ", ".join(
        f"{c['name']} ({'Secure, ' if c['secure'] else ''}HttpOnly, SameSite={c['samesite']})"
        for c in cookies
    )
    if problems:
        return Check(
            "cookies", "fail", "; ".join(p for p, _ in problems), hint=problems[0][1], details=details
        )
    if warnings:
        return Check(
            "cookies",
            "warn",
            f"{names}; " + "; ".join(w for w, _ in warnings),
            hint=warnings[0][1],
            details=details,
        )
    return Check("cookies", "ok", names, details=details)


# -- store, persistence, clock --------------------------------------------------------------------------


def _driver_url(url: str) -> str:
    """The URL without keyfob's own query options (for redis-py / asyncpg directly)."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in _KEYFOB_QUERY])
    scheme = parts.scheme.lower()
    if scheme.startswith("postgresql+") or scheme == "postgres":
        scheme = "postgresql"
    if scheme in ("redis+cluster", "rediss+cluster"):
        scheme = scheme.split("+")[0]
    netloc = parts.netloc.split(",", 1)[0]  # a cluster's first node
    return urlunsplit((scheme, netloc, parts.path, query, ""))


def _kind(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgres"):
        return "postgresql"
    if scheme.startswith("redis"):
        return "redis"
    return scheme


async def check_store(url: str) -> Check:
    kind = _kind(url)
    path = sqlite_file(url)
    if kind == "memory":
        return Check(
            "store",
            "warn",
            "memory:// keeps sessions in this process only (tests and demos)",
            hint="use sqlite:///keyfob.db, postgresql://... or redis://... for an app",
        )
    if path is not None and not path.exists():
        return Check(
            "store",
            "fail",
            f"there is no SQLite store at {path.resolve()}",
            hint=f"check the path, or create it with `keyfob migrate --store {url}`",
        )
    try:
        store = open_store(url)
    except ConfigError as exc:
        return Check("store", "fail", exc.message, hint=exc.hint or None)
    details: dict[str, Any] = {"kind": kind}
    try:
        start = time.perf_counter()
        version: Callable[[], Awaitable[int | None]] | None = getattr(store, "schema_version", None)
        schema = await version() if version is not None else None
        rows = await store.count()
        details["round_trip_ms"] = round((time.perf_counter() - start) * 1000, 2)
        details["rows"] = rows
        details["schema_version"] = schema
        details["namespace"] = getattr(store, "namespace", None)
        epoch: Callable[[], Awaitable[str | None]] | None = getattr(store, "epoch", None)
        if epoch is not None and await epoch() is None:
            return Check(
                "store",
                "fail",
                "the store has no epoch: it was never migrated, or it lost its data (FLUSHDB, a dropped "
                "table, a Redis restart without persistence)",
                hint=f"run `keyfob migrate --store {url}`; if it lost its data, every user signs in again",
                details=details,
            )
    except StoreUnavailable as exc:
        if any(m in exc.message for m in ("UndefinedTable", "does not exist", "no such table")):
            return Check(
                "store",
                "fail",
                f"keyfob's tables are not there ({exc.message})",
                hint=f"run `keyfob migrate --store {url}`",
                details=details,
            )
        return Check(
            "store", "fail", f"cannot reach the store: {exc.message}", hint=store_hint(url), details=details
        )
    except Exception as exc:  # e.g. the tables are missing: say it, never a traceback
        return Check(
            "store",
            "fail",
            f"the store answered with an error: {type(exc).__name__}: {exc}",
            hint=f"run `keyfob migrate --store {url}` to create keyfob's tables",
            details=details,
        )
    finally:
        await store.close()
    if version is not None and schema is None:
        return Check(
            "store",
            "fail",
            "keyfob's tables are not there",
            details=details,
            hint=f"run `keyfob migrate --store {url}`",
        )
    return Check(
        "store",
        "ok",
        f"{kind} store reachable ({details['round_trip_ms']} ms, {rows} row(s))",
        details=details,
    )


async def check_persistence(url: str) -> Check:
    if _kind(url) != "redis":
        kind = _kind(url)
        why = {"sqlite": "a file on disk", "postgresql": "PostgreSQL's own durability"}.get(kind, "n/a")
        return Check("persistence", "skip", f"{kind}: {why}")
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        _driver_url(url), socket_connect_timeout=2, socket_timeout=3, decode_responses=True
    )
    try:
        try:
            save = (await client.config_get("save")).get("save", "")
            aof = (await client.config_get("appendonly")).get("appendonly", "no")
        except aioredis.ResponseError:  # CONFIG disabled (managed Redis): INFO persistence says less
            info = await client.info("persistence")
            save = "?" if info.get("rdb_last_save_time") else ""
            aof = "yes" if info.get("aof_enabled") else "no"
    except (OSError, aioredis.RedisError) as exc:
        return Check(
            "persistence",
            "fail",
            f"cannot ask Redis about persistence: {type(exc).__name__}: {exc}",
            hint=store_hint(url),
        )
    finally:
        await client.aclose()
    save, aof = str(save or ""), str(aof or "no")
    details = {"save": save, "appendonly": aof}
    if aof == "yes" or save.strip():
        how = "AOF (appendonly yes)" if aof == "yes" else f"RDB snapshots (save {save})"
        return Check("persistence", "ok", f"Redis persists to disk: {how}", details=details)
    return Check(
        "persistence",
        "fail",
        'Redis keeps nothing on disk (save "", appendonly no): a restart signs everyone out and forgets '
        "every revocation and token version",
        hint="enable AOF (appendonly yes, appendfsync everysec) or RDB snapshots (save 3600 1 300 100) "
        "in redis.conf, or use a Redis that persists",
        details=details,
    )


async def check_clock(url: str) -> Check:
    kind = _kind(url)
    if kind not in ("redis", "postgresql"):
        return Check("clock", "skip", f"{kind}: the store runs on this machine's clock")
    try:
        before = time.time()
        server = await (_redis_time(url) if kind == "redis" else _pg_time(url))
        after = time.time()
    except Exception as exc:
        return Check(
            "clock",
            "fail",
            f"cannot read the {kind} server's clock: {type(exc).__name__}: {exc}",
            hint=store_hint(url),
        )
    skew = server - (before + after) / 2
    details = {"skew_seconds": round(skew, 4), "uncertainty_seconds": round((after - before) / 2, 4)}
    if abs(skew) > 30:
        return Check(
            "clock",
            "fail",
            f"this machine's clock is {abs(skew):.1f} s {'behind' if skew > 0 else 'ahead of'} the store's",
            hint="run NTP (chrony, systemd-timesyncd) on every node and on the store's server",
            details=details,
        )
    if abs(skew) > 1:
        return Check(
            "clock",
            "warn",
            f"clock skew against the store: {skew:+.2f} s (keyfob allows 30 s)",
            hint="run NTP on every node",
            details=details,
        )
    return Check("clock", "ok", f"clock skew against the store: {skew * 1000:+.1f} ms", details=details)


async def _redis_time(url: str) -> float:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(_driver_url(url), socket_connect_timeout=2, socket_timeout=3)
    try:
        sec, usec = await client.time()
    finally:
        await client.aclose()
    return sec + usec / 1e6


async def _pg_time(url: str) -> float:
    import asyncpg

    conn = await asyncpg.connect(_driver_url(url), timeout=3)
    try:
        value = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
    finally:
        await conn.close()
    return float(value)


# -- feed -----------------------------------------------------------------------------------------------


async def check_feed(settings: Settings, store_url: str, feed_url: str | None, *, timeout: float) -> Check:
    if settings.strategy == "database":
        return Check("feed", "skip", "database strategy: every request reads the store, no feed needed")
    url = feed_url or store_url
    probe = f"doctor-{_secrets.token_hex(8)}"
    details: dict[str, Any] = {"url_kind": _kind(url), "probe_session_id": probe}
    store: SessionStore | None = None
    if sqlite_file(url) is not None:
        from ..stores._polling import PollingFeed

        if not sqlite_file(url).exists():  # type: ignore[union-attr]
            return Check("feed", "fail", "no SQLite store to poll", hint=f"`keyfob migrate --store {url}`")
        store = open_store(url)
        subscriber: RevocationFeed | None = PollingFeed(store)
        publisher: RevocationFeed | None = None
        details["kind"] = "polling (SQLite, every 0.1 s)"
    else:
        try:
            subscriber, publisher, store = await _open_feeds(url, given=feed_url is not None)
        except ConfigError as exc:
            return Check("feed", "fail", exc.message, hint=exc.hint or None, details=details)
        if subscriber is None:
            if store is not None:
                await store.close()
            return Check(
                "feed",
                "warn",
                f"{_kind(url)} has no revocation feed: revocations reach other "
                "processes only through the store",
                details=details,
            )
    if subscriber is None:
        return Check("feed", "skip", "no feed to test", details=details)
    delivered, up = asyncio.Event(), asyncio.Event()

    def handler(event: Mapping[str, Any]) -> None:
        if event.get("sid") == probe:
            delivered.set()

    def on_state(is_up: bool) -> None:
        if is_up:
            up.set()

    try:
        try:
            await asyncio.wait_for(subscriber.start(handler, on_state), timeout)
            await asyncio.wait_for(up.wait(), timeout)
        except (TimeoutError, KeyfobError, OSError) as exc:
            why = f": {exc.message}" if isinstance(exc, KeyfobError) else ""
            return Check(
                "feed",
                "fail",
                f"the revocation feed is down: could not subscribe within {timeout:g} s{why}",
                hint=_feed_hint(url),
                details=details,
            )
        start = time.perf_counter()
        until = time.time() + 5
        try:
            if publisher is not None:
                await publisher.publish({"t": "sid", "sid": probe, "until": until, "at": time.time()})
            else:
                assert store is not None
                await store.add_revocation(probe, until=until)
            await asyncio.wait_for(delivered.wait(), timeout)
        except TimeoutError:
            return Check(
                "feed",
                "fail",
                f"a revocation was published but not delivered within {timeout:g} s",
                hint=_feed_hint(url),
                details=details,
            )
        except KeyfobError as exc:
            return Check(
                "feed",
                "fail",
                f"cannot publish a revocation: {exc.message}",
                hint=_feed_hint(url),
                details=details,
            )
        ms = (time.perf_counter() - start) * 1000
    finally:
        for feed in (subscriber, publisher):
            if feed is not None:
                try:
                    await feed.close()
                except Exception:  # closing a feed that never connected
                    pass
        if store is not None:
            await store.close()
    details["round_trip_ms"] = round(ms, 2)
    target = 50.0 if publisher is not None else 250.0
    if ms > target:
        return Check(
            "feed",
            "warn",
            f"revocation round trip took {ms:.1f} ms (target < {target:g} ms)",
            hint="a loaded or distant feed server delays revocations on other nodes",
            details=details,
        )
    return Check("feed", "ok", f"revocation round trip {ms:.1f} ms", details=details)


async def _open_feeds(
    url: str, *, given: bool
) -> tuple[RevocationFeed | None, RevocationFeed | None, SessionStore | None]:
    """A subscriber and a publisher on the feed the engine would use (the store's own, when the
    store makes it: its channel follows the store's namespace), or on the ``--feed`` URL; and the
    store that made them (to close last), if any."""
    if not given:
        store = open_store(url)
        make: Callable[[], RevocationFeed | None] | None = getattr(store, "feed", None)
        if callable(make):
            return make(), make(), store
        await store.close()
    return open_feed(url), open_feed(url), None


def _feed_hint(url: str) -> str:
    return store_hint(url) + "; until the feed is back, jwt/hybrid nodes check the store on every request"


# -- all of it --------------------------------------------------------------------------------------------


async def diagnose(
    target: Target,
    *,
    strategy: str | None,
    origin: str | None,
    feed_url: str | None,
    timeout: float,
    cookie_domain: str | None = None,
    samesite: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Check]:
    """Run every check on this configuration (the environment plus the command line's target)."""
    env = dict(os.environ if environ is None else environ)
    raw_env = env.get("KEYFOB_SECRET") or env.get("AUTH_SECRET") or ""
    raw = [s.strip() for s in raw_env.split(",") if s.strip()]
    source, secret_file = ("KEYFOB_SECRET" if env.get("KEYFOB_SECRET") else "AUTH_SECRET"), None
    if not raw and target.secret is not None:
        raw, source = [target.secret], "data dir"
        secret_file = target.data_dir / "keyfob-secret" if target.data_dir else None
    checks: list[Check] = []
    overrides = target.engine_overrides(strategy)
    overrides.pop("secret", None)
    if cookie_domain:
        overrides["cookie_domain"] = cookie_domain
    if samesite:
        overrides["cookie_samesite"] = samesite
    env.pop("KEYFOB_SECRET", None)
    env.pop("AUTH_SECRET", None)
    try:  # everything but the secret, which is judged on its own above
        settings = Settings.from_env(env, secrets=(_PLACEHOLDER,), **overrides)
    except ConfigError as exc:
        checks.append(check_secret(raw, source=source, secret_file=secret_file, max_age=30 * 86400))
        checks.append(Check("settings", "fail", exc.message, hint=exc.hint or None))
        return checks
    checks.append(check_secret(raw, source=source, secret_file=secret_file, max_age=settings.max_age))
    checks.append(
        Check(
            "settings",
            "ok",
            f"{settings.strategy} strategy on {_kind(settings.store)}",
            details={"strategy": settings.strategy, "store_kind": _kind(settings.store)},
        )
    )
    checks.append(check_cookies(settings, origin))
    store_check = await check_store(settings.store)
    checks.append(store_check)
    # The store check fails for a store that answered, too (no tables, no epoch): say so, not "unreachable".
    skipped = "skipped until the store check above passes"
    checks.append(
        await check_persistence(settings.store)
        if store_check.status != "fail"
        else Check("persistence", "skip", skipped)
    )
    checks.append(await check_feed(settings, settings.store, feed_url, timeout=timeout))
    checks.append(
        await check_clock(settings.store)
        if store_check.status != "fail"
        else Check("clock", "skip", skipped)
    )
    return checks
