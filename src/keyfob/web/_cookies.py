"""Cookies: ``Set-Cookie`` serialisation, ``__Host-``/``__Secure-`` prefixes, chunking, parsing.

Pure code, no I/O. Three rules hold everywhere in this module:

* Input from the browser never makes anything raise: :meth:`CookieSpec.read`,
  :func:`parse_cookie_header` and :func:`is_local_development` return ``None``/empty/``False``
  for anything hostile, and bound their work regardless of the input's size.
* Input from the *application* is validated: a name, value, path or domain that could inject
  ``;``, CR, LF or any other byte not allowed in a ``Set-Cookie`` header raises ``ValueError``.
* Cookie values never appear in a ``repr``, an error message or a log line.

Chunking follows Auth.js (``packages/core/src/lib/utils/cookie.ts``, ``SessionStore``): a value
longer than :data:`CHUNK_SIZE` (``4096 - 160 = 3936`` characters) is split into ``name.0``,
``name.1``, ... each holding at most ``CHUNK_SIZE`` characters; a value that fits is written under
the plain ``name``. Whenever the shape changes, the cookies of the old shape are cleared with
``Max-Age=0``, so a chunked Auth.js session cookie can be read here and vice versa.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import MappingProxyType

__all__ = [
    "ALLOWED_COOKIE_SIZE",
    "CHUNK_SIZE",
    "MAX_CHUNKS",
    "MAX_VALUE_SIZE",
    "CookieSpec",
    "SetCookie",
    "is_local_development",
    "parse_cookie_header",
]

#: What browsers guarantee per cookie (RFC 6265 §6.1: name + value + attributes).
ALLOWED_COOKIE_SIZE = 4096
#: Auth.js's estimate of an empty session cookie with every attribute set.
_ESTIMATED_EMPTY_COOKIE_SIZE = 160
#: Characters of value per chunk; the same number Auth.js uses, so the chunks line up.
CHUNK_SIZE = ALLOWED_COOKIE_SIZE - _ESTIMATED_EMPTY_COOKIE_SIZE
#: :meth:`CookieSpec.read` gives up when ``name.<MAX_CHUNKS>`` exists (bounds the work per request).
MAX_CHUNKS = 16
#: Longest logical value (all chunks together) that is written or read back, in characters.
MAX_VALUE_SIZE = 16 * 1024
#: At most this many stale chunks are cleared per response (a hostile client could send thousands).
_MAX_STALE_CLEARED = 4 * MAX_CHUNKS

_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_HOST_PREFIX = "__Host-"
_SECURE_PREFIX = "__Secure-"
# RFC 7230 token (RFC 6265 cookie-name).
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 6265 cookie-octet: printable US-ASCII except space, DQUOTE, comma, semicolon and backslash.
_COOKIE_VALUE_RE = re.compile(r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*")
# RFC 6265 path-value: any CHAR except CTLs or ";"; must start with "/" to mean anything.
_PATH_RE = re.compile(r"/[\x20-\x3A\x3C-\x7E]*")
_DOMAIN_RE = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_CONTROL_RE = re.compile(r"[\x00-\x1F\x7F]")
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,5}")
# Far-past Expires for deletions; far-future cap so a huge Max-Age cannot overflow datetime.
_EPOCH_HTTP_DATE = "Thu, 01 Jan 1970 00:00:00 GMT"
_MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z


def _has_prefix(name: str, prefix: str) -> bool:
    # Browsers match the prefixes case-insensitively (RFC 6265bis §4.1.3).
    return name[: len(prefix)].lower() == prefix.lower()


def _http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(min(max(ts, 0.0), _MAX_TIMESTAMP), UTC), usegmt=True)


@dataclass(frozen=True, slots=True)
class SetCookie:
    """One ``Set-Cookie`` header, validated on construction.

    ``max_age=None`` makes a browser-session cookie (no ``Max-Age``/``Expires``); ``max_age=0``
    deletes the cookie (the value must be ``""``; ``Expires`` is set to 1970). ``samesite="none"``
    forces ``secure=True``, as browsers require. The value is left out of ``repr`` so a logged
    ``SetCookie`` never leaks a token.

    Raises ``ValueError`` for anything that could not be sent safely: a name that is not an
    RFC 6265 token, a value with characters outside cookie-octets (``;``, CR, LF, space, ...),
    a path or domain with control characters or ``;``, a ``__Host-``/``__Secure-`` name whose
    attributes browsers would reject, or name + value above 4096 bytes.
    """

    name: str
    value: str = field(repr=False)
    max_age: int | None
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    httponly: bool = True
    samesite: str = "lax"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOKEN_RE.fullmatch(self.name):
            raise ValueError(
                "the cookie name is empty or contains characters not allowed in a cookie name "
                "(separators, spaces, control characters or non-ASCII); use letters, digits and .-_"
            )
        if not isinstance(self.value, str) or not _COOKIE_VALUE_RE.fullmatch(self.value):
            raise ValueError(
                f"the value of cookie {self.name} contains characters not allowed in a cookie "
                "(space, \", comma, ;, \\, control characters or non-ASCII); encode it first, "
                "e.g. with base64url"
            )
        if len(self.name) + len(self.value) > ALLOWED_COOKIE_SIZE:
            raise ValueError(
                f"cookie {self.name} is {len(self.name) + len(self.value)} bytes, more than the "
                f"{ALLOWED_COOKIE_SIZE} browsers keep; write it with CookieSpec.write(), which chunks it"
            )
        if self.max_age is not None:
            if type(self.max_age) is not int or self.max_age < 0:
                raise ValueError(
                    f"max_age of cookie {self.name} must be a whole number of seconds >= 0 "
                    "(0 deletes the cookie) or None for a browser-session cookie"
                )
            if self.max_age == 0 and self.value:
                raise ValueError(f"a deleted cookie ({self.name}, max_age=0) must have the value \"\"")
        if not isinstance(self.path, str) or not _PATH_RE.fullmatch(self.path):
            raise ValueError(
                f"the path of cookie {self.name} must start with / and contain no ; or control characters"
            )
        if self.domain is not None and (
            not isinstance(self.domain, str) or not _DOMAIN_RE.fullmatch(self.domain)
        ):
            raise ValueError(
                f"the domain of cookie {self.name} is not a host name; use e.g. example.com or "
                "leave it None to bind the cookie to the exact host"
            )
        samesite = self.samesite.lower() if isinstance(self.samesite, str) else ""
        if samesite not in _SAMESITE:
            raise ValueError(f"samesite of cookie {self.name} must be \"lax\", \"strict\" or \"none\"")
        object.__setattr__(self, "samesite", samesite)
        if samesite == "none":
            # Browsers drop SameSite=None cookies that are not Secure.
            object.__setattr__(self, "secure", True)
        if _has_prefix(self.name, _SECURE_PREFIX) and not self.secure:
            raise ValueError(f"cookie {self.name} has the __Secure- prefix, so it must be secure=True")
        if _has_prefix(self.name, _HOST_PREFIX) and (
            not self.secure or self.domain is not None or self.path != "/"
        ):
            raise ValueError(
                f"cookie {self.name} has the __Host- prefix, so it needs secure=True, path=\"/\" "
                "and domain=None; drop the prefix (prefix=\"__Secure-\" or \"\") to use other attributes"
            )

    @property
    def deletes(self) -> bool:
        """True when this header deletes the cookie (``Max-Age=0``)."""
        return self.max_age == 0

    def header(self, *, now: float | None = None) -> str:
        """The value of the ``Set-Cookie`` header.

        ``now`` (epoch seconds, default: the system clock) only feeds ``Expires``, which is
        ``now + max_age`` formatted per RFC 7231 (``Expires`` is for old browsers; current ones
        use ``Max-Age``)::

            sid=abc; Path=/; Max-Age=60; Expires=Thu, 01 Jan 2026 00:01:00 GMT; HttpOnly; Secure; SameSite=Lax
        """
        parts = [f"{self.name}={self.value}", f"Path={self.path}"]
        if self.domain is not None:
            parts.append(f"Domain={self.domain}")
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
            if self.max_age == 0:
                parts.append(f"Expires={_EPOCH_HTTP_DATE}")
            else:
                parts.append(f"Expires={_http_date((time.time() if now is None else now) + self.max_age)}")
        if self.httponly:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        parts.append(f"SameSite={_SAMESITE[self.samesite]}")
        return "; ".join(parts)


_EMPTY: Mapping[str, str] = MappingProxyType({})


class CookieSpec:
    """One logical cookie: a base name plus attributes, possibly stored as several chunks.

    The effective :attr:`name` carries the prefix. With ``prefix="auto"`` it is ``__Host-``
    when ``secure`` and ``domain is None`` and ``path == "/"``, ``__Secure-`` when ``secure``
    otherwise, and nothing when not secure. ``prefix=""`` means no prefix; any other string is
    used as given (``"__Secure-"`` matches Auth.js's ``__Secure-authjs.session-token``).
    ``samesite="none"`` forces ``secure=True``.

    Raises ``ValueError`` when the name or attributes could not be sent safely, or when an
    explicit ``__Host-``/``__Secure-`` prefix contradicts the attributes.
    """

    __slots__ = ("base_name", "domain", "httponly", "name", "path", "samesite", "secure")

    def __init__(
        self,
        base_name: str,
        *,
        secure: bool,
        samesite: str = "lax",
        domain: str | None = None,
        path: str = "/",
        httponly: bool = True,
        prefix: str = "auto",
    ) -> None:
        samesite = samesite.lower() if isinstance(samesite, str) else samesite
        if samesite == "none":
            secure = True
        if prefix == "auto":
            if not secure:
                prefix = ""
            elif domain is None and path == "/":
                prefix = _HOST_PREFIX
            else:
                prefix = _SECURE_PREFIX
        if not isinstance(prefix, str) or not isinstance(base_name, str) or not base_name:
            raise ValueError("the cookie needs a non-empty base name and a string prefix")
        self.base_name = base_name
        #: The effective cookie name, prefix included (also the Auth.js HKDF salt).
        self.name = prefix + base_name
        self.secure = secure
        self.samesite = samesite
        self.domain = domain
        self.path = path
        self.httponly = httponly
        # Validate everything once, including the longest chunk name, by building a deletion.
        self._cookie(f"{self.name}.{MAX_CHUNKS}", "", 0)
        self._cookie(self.name, "", 0)

    def __repr__(self) -> str:
        return (
            f"CookieSpec(name={self.name!r}, secure={self.secure}, samesite={self.samesite!r}, "
            f"domain={self.domain!r}, path={self.path!r}, httponly={self.httponly})"
        )

    def _cookie(self, name: str, value: str, max_age: int | None) -> SetCookie:
        return SetCookie(
            name=name,
            value=value,
            max_age=max_age,
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
        )

    def _present(self, existing: Mapping[str, str]) -> list[str]:
        """Names of this cookie's shapes present in ``existing``: plain first, then chunks by index."""
        prefix = self.name + "."
        indexed: list[tuple[int, str]] = []
        for key in existing:
            if not isinstance(key, str) or not key.startswith(prefix):
                continue
            suffix = key[len(prefix) :]
            # Canonical decimal only ("0", "1", ... not "01" or "+1"), the names we write.
            if _INDEX_RE.fullmatch(suffix):
                indexed.append((int(suffix), key))
        indexed.sort()
        names = [self.name] if self.name in existing else []
        return names + [key for _, key in indexed[:_MAX_STALE_CLEARED]]

    def read(self, cookies: Mapping[str, str]) -> str | None:
        """The logical value from the request's cookies, or ``None``. Never raises.

        The plain ``name`` wins when present and non-empty; otherwise the chunks ``name.0``,
        ``name.1``, ... are joined in numeric order. ``None`` when there is nothing, when the
        chunks have a gap or an empty chunk, when ``name.<MAX_CHUNKS>`` exists, when the value is
        longer than :data:`MAX_VALUE_SIZE`, or when it holds characters no cookie we write could
        hold. Work is bounded by ``MAX_CHUNKS`` lookups whatever the size of ``cookies``.
        """
        try:
            return self._read(cookies)
        except Exception:  # a hostile or odd mapping must never turn into a 500
            return None

    def _read(self, cookies: Mapping[str, str]) -> str | None:
        plain = cookies.get(self.name)
        if plain:
            return plain if _valid_value(plain) else None
        if cookies.get(f"{self.name}.{MAX_CHUNKS}") is not None:
            return None
        parts: list[str] = []
        total = 0
        for index in range(MAX_CHUNKS):
            chunk = cookies.get(f"{self.name}.{index}")
            if chunk is None:
                break
            if not chunk or not _valid_value(chunk):
                return None
            total += len(chunk)
            if total > MAX_VALUE_SIZE:
                return None
            parts.append(chunk)
        if not parts:
            return None
        # A chunk after the first gap means the set is incomplete or tampered with.
        for index in range(len(parts) + 1, MAX_CHUNKS):
            if cookies.get(f"{self.name}.{index}") is not None:
                return None
        return "".join(parts)

    def write(
        self, value: str, *, max_age: int | None, existing: Mapping[str, str] = _EMPTY
    ) -> list[SetCookie]:
        """The ``Set-Cookie`` headers that store ``value`` for ``max_age`` seconds.

        One cookie under the plain name when the value fits in :data:`CHUNK_SIZE`, else chunks
        ``name.0`` .. ``name.N`` (Auth.js's layout). Every other shape present in ``existing``
        (the request's cookies) is cleared with ``Max-Age=0``, so no stale chunk survives a value
        that shrank. ``max_age`` should be the session lifetime; ``None`` makes browser-session
        cookies. Raises ``ValueError`` for an empty value (use :meth:`clear`), a value above
        :data:`MAX_VALUE_SIZE`, characters not allowed in a cookie, or ``max_age <= 0``.
        """
        if not isinstance(value, str) or not value:
            raise ValueError(f"cannot write an empty value to cookie {self.name}; use clear() to delete it")
        if len(value) > MAX_VALUE_SIZE:
            raise ValueError(
                f"the value for cookie {self.name} is {len(value)} characters, more than the "
                f"{MAX_VALUE_SIZE} keyfob reads back; store less in the session or use the database strategy"
            )
        if max_age is not None and (type(max_age) is not int or max_age <= 0):
            raise ValueError(
                f"max_age for cookie {self.name} must be a positive number of seconds "
                "(the session lifetime) or None; use clear() to delete the cookie"
            )
        if len(value) <= CHUNK_SIZE:
            fresh = [self._cookie(self.name, value, max_age)]
        else:
            fresh = [
                self._cookie(f"{self.name}.{i}", value[start : start + CHUNK_SIZE], max_age)
                for i, start in enumerate(range(0, len(value), CHUNK_SIZE))
            ]
        written = {c.name for c in fresh}
        stale = [self._cookie(n, "", 0) for n in self._present(existing) if n not in written]
        return stale + fresh

    def clear(self, existing: Mapping[str, str] = _EMPTY) -> list[SetCookie]:
        """``Max-Age=0`` headers for the plain name (always) and every chunk present in ``existing``."""
        names = self._present(existing)
        if self.name not in names:
            names.insert(0, self.name)
        return [self._cookie(n, "", 0) for n in names]


# bytes.translate table: the bytes _COOKIE_VALUE_RE accepts unchanged, every other one moved by 0x80. An
# ASCII value's bytes come back equal to themselves exactly when the regex would match: the same check,
# at a fraction of the cost (it runs on every request).
_NON_OCTET_MARKED = bytes(b if _COOKIE_VALUE_RE.fullmatch(chr(b)) else b ^ 0x80 for b in range(256))


def _valid_value(value: object) -> bool:
    if not isinstance(value, str) or len(value) > MAX_VALUE_SIZE or not value.isascii():
        return False
    raw = value.encode()  # ASCII, so UTF-8 gives the same bytes (without looking up a codec's name)
    return raw.translate(_NON_OCTET_MARKED) == raw


_MAX_HEADER = 64 * 1024
# bytes.translate table: every byte _CONTROL_RE matches (\x00-\x1F, \x7F) → itself + 0x80, the rest
# unchanged. So bytes come back equal to themselves exactly when none of them is a control character.
_CONTROL_MARKED = bytes(b | 0x80 if _CONTROL_RE.match(chr(b)) else b for b in range(256))


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` request header into ``{name: value}``. Never raises.

    Tolerant like Starlette's ``cookie_parser`` (split on ``;``, strip spaces, drop one pair of
    surrounding double quotes) with three differences that matter for security: the *first*
    occurrence of a name wins (browsers send the most specific path first), pairs without ``=``
    or with an empty name are skipped, and any pair containing a control character (NUL, CR,
    LF, ...) is ignored. Headers above 64 KB are cut to 64 KB first.
    """
    if not isinstance(header, str):
        return {}
    header = header[:_MAX_HEADER]
    if header.isascii():
        raw = header.encode("ascii")
        return _parse_pairs(header, raw.translate(_CONTROL_MARKED) == raw)
    return _parse_pairs(header, False)


def parse_cookie_bytes(raw: bytes) -> dict[str, str]:
    """:func:`parse_cookie_header` of a header as an ASGI server hands it over: bytes, read as latin-1.

    The same dict as ``parse_cookie_header(raw.decode("latin-1"))``, with one pass fewer over the
    header: its control characters are looked for in the bytes (a latin-1 character is its byte).
    """
    raw = raw[:_MAX_HEADER]
    return _parse_pairs(raw.decode("latin-1"), raw.translate(_CONTROL_MARKED) == raw)


def _parse_pairs(header: str, clean: bool) -> dict[str, str]:
    # One scan of the whole header (``clean``: not one control character in it, the usual case)
    # instead of two regex searches per pair: then no pair can contain one.
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, sep, value = pair.partition("=")
        if not sep:
            continue
        name, value = name.strip(" \t"), value.strip(" \t")
        if not name or name in cookies:
            continue
        if not clean and (_CONTROL_RE.search(name) or _CONTROL_RE.search(value)):
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


def parse_joined_cookie_header(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` value that may be several ``Cookie`` headers joined with ``,``.

    HTTP/2 may send one ``Cookie`` header per cookie (RFC 9113 §8.2.3); the ASGI adapter joins them
    with ``"; "`` itself, but a WSGI server (gunicorn ``,``, werkzeug ``", "``) and Django's ASGI
    handler (``,``) join them before an adapter sees them. So ``,`` separates pairs here as ``;``
    does: RFC 6265's cookie-octets exclude it, so no cookie keyfob writes (nor any conforming one) is
    split; a foreign value with a comma only reads as two pairs, which keyfob's names are not in.
    """
    return parse_cookie_header(header.replace(",", ";") if "," in header else header)


# "testserver" is the host of Starlette's/FastAPI's TestClient (http://testserver): a test's first
# request must get cookies the test client sends back, and a Secure cookie over http is never sent.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1", "testserver"})


def is_local_development(scheme: str, host: str) -> bool:
    """True only for plain-HTTP requests to this machine: the one case where cookies may skip Secure.

    ``scheme`` must be ``http``; ``host`` (the ``Host`` header, port allowed) must be
    ``localhost``, ``127.0.0.1``, ``[::1]``/``::1``, a ``*.localhost`` name, or ``testserver`` (the
    default host of Starlette's ``TestClient``). Never raises.
    """
    if not isinstance(scheme, str) or not isinstance(host, str) or scheme.lower() != "http":
        return False
    host = host.strip().lower()
    if host.startswith("["):
        host, bracket, rest = host.partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit())):
            return False
        host += "]"
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
        if not (port.isascii() and port.isdigit()):
            return False
    host = host.removesuffix(".")
    if host in _LOCAL_HOSTS:
        return True
    return host.endswith(".localhost") and bool(_DOMAIN_RE.fullmatch(host))
