"""SQL store URL options: ``?table_prefix=``, ``?pool_size=``, ``?listen_url=``, ``?pgbouncer=`` …

Options come from the URL's query string (so ``KEYFOB_STORE`` / ``Settings.store`` can carry
them) or as keyword arguments of ``open_store``; giving one both ways with different values is an
error. Anything wrong raises :class:`~keyfob.ConfigError` naming the option to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ...errors import ConfigError

__all__ = ["SQLOptions", "parse"]

DEFAULT_PREFIX = "keyfob_"
SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
PG_SCHEMES = ("postgresql", "postgresql+asyncpg", "postgres")

#: libpq/asyncpg DSN parameters passed through to asyncpg untouched
_LIBPQ = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword", "sslnegotiation",
    "direct_tls", "gssencmode", "application_name", "target_session_attrs", "krbsrvname", "gsslib",
    "passfile", "options", "host", "port", "user", "password", "dbname", "service",
})  # fmt: skip
_COMMON = ("table_prefix",)
_SQLITE = (*_COMMON, "busy_timeout")
_PG = (*_COMMON, "pool_size", "pool_min", "connect_timeout", "listen_url", "pgbouncer")
_ALIASES = {"pool_max": "pool_size"}  # the keyword argument's older name


@dataclass(frozen=True, slots=True)
class SQLOptions:
    """A parsed SQL store URL: where to connect and with what options."""

    url: str  # without keyfob's options (libpq's stay)
    postgres: bool
    table_prefix: str = DEFAULT_PREFIX
    busy_timeout: float = 3.0
    pool_size: int = 8
    pool_min: int = 1
    connect_timeout: float = 5.0
    listen_url: str | None = None
    pgbouncer: bool = False

    @property
    def namespace(self) -> str:
        """The table prefix in use, ``""`` for the default."""
        return "" if self.table_prefix == DEFAULT_PREFIX else self.table_prefix


def _bad(name: str, value: Any, want: str) -> ConfigError:
    return ConfigError(
        f"bad SQL store option {name}={value!r}: {want}",
        hint=f"fix ?{name}= in the store URL (store setting / KEYFOB_STORE) or the {name}= argument",
    )


def _number(name: str, value: Any, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        n = kind(value)
    except (TypeError, ValueError):
        raise _bad(name, value, f"want a number from {low:g} to {high:g}") from None
    if isinstance(value, bool) or not low <= n <= high:
        raise _bad(name, value, f"want a number from {low:g} to {high:g}")
    return n


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise _bad(name, value, "want true or false")


def parse(url: str, kwargs: dict[str, Any]) -> SQLOptions:
    """Split ``url`` into the connection URL and keyfob's options (merged with ``kwargs``)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    allowed: tuple[str, ...]
    if scheme in SQLITE_SCHEMES:
        postgres, allowed = False, _SQLITE
    elif scheme in PG_SCHEMES:
        postgres, allowed = True, _PG
    else:
        raise ConfigError(f"the SQL store cannot open {scheme!r} URLs (store setting)",
                          hint="use sqlite:///path.db or postgresql://user@host/db")  # fmt: skip
    parts = urlsplit(url)
    given: dict[str, Any] = {}
    passthrough: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in allowed:
            given[key] = value
        elif postgres and key in _LIBPQ:
            passthrough.append((key, value))
        else:
            raise ConfigError(
                f"unknown option {key!r} in the store URL {scheme}://…",
                hint=f"keyfob's options for this store are {', '.join(allowed)}"
                + (" (plus libpq's: sslmode, application_name, …)" if postgres else ""),
            )
    for key, value in kwargs.items():
        key = _ALIASES.get(key, key)
        if key not in allowed:
            raise ConfigError(f"unknown SQL store option {key}=", hint=f"use one of: {', '.join(allowed)}")
        if key in given and str(given[key]) != str(value):
            raise ConfigError(
                f"{key} is given twice, as ?{key}={given[key]} in the store URL and as {key}={value!r}",
                hint="keep one of them",
            )
        given[key] = value
    out: dict[str, Any] = {}
    if "table_prefix" in given:
        prefix = str(given["table_prefix"])
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,39}", prefix):
            raise _bad("table_prefix", prefix, "use up to 40 letters, digits and _ (not a digit first)")
        out["table_prefix"] = prefix
    if "busy_timeout" in given:
        out["busy_timeout"] = _number("busy_timeout", given["busy_timeout"], float, 0.001, 600)
    if "pool_size" in given:
        out["pool_size"] = _number("pool_size", given["pool_size"], int, 1, 1000)
    if "pool_min" in given:
        out["pool_min"] = _number("pool_min", given["pool_min"], int, 0, 1000)
    if "connect_timeout" in given:
        out["connect_timeout"] = _number("connect_timeout", given["connect_timeout"], float, 0.001, 600)
    if "pgbouncer" in given:
        out["pgbouncer"] = _flag("pgbouncer", given["pgbouncer"])
    if given.get("listen_url"):
        listen = str(given["listen_url"])
        if listen.split("://", 1)[0].lower() not in PG_SCHEMES:
            raise _bad("listen_url", listen, "want the postgresql:// URL of a direct connection")
        out["listen_url"] = listen
    clean = url.split("?", 1)[0] + (f"?{urlencode(passthrough)}" if passthrough else "")
    return SQLOptions(clean, postgres, **out)
