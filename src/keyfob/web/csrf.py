"""CSRF protection: an Origin/Referer check plus an Auth.js-style signed double-submit token.

A state-changing request (anything but GET, HEAD, OPTIONS, TRACE) passes :meth:`CSRFProtect.check`
only when both hold:

1. **It comes from an allowed origin.** The ``Origin`` header, or failing that the origin of the
   ``Referer``, is the app's own origin or one listed in ``allowed_origins``. A request with
   neither header (old browsers, privacy extensions) is judged by step 2 alone.
2. **It carries the token.** The HttpOnly cookie holds ``token.signature`` with
   ``signature = base64url(HMAC-SHA256(key, "keyfob.csrf.v2|" + binding + "|" + token))``; the form
   field or header carries ``token``, which JavaScript gets from ``GET /auth/csrf``. ``binding`` is
   the session id (``""`` before sign-in), so a token is good for one session only: an attacker can
   neither read the cookie nor plant one the server would accept for the victim's session — not
   even a genuine one from the attacker's own browser ("cookie tossing" from a sibling subdomain).

Every comparison uses :func:`hmac.compare_digest`. Messages say what was wrong and what to do;
none contains a token. Pure code, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from ..errors import ConfigError, CSRFError
from ._cookies import CookieSpec, SetCookie

__all__ = [
    "SAFE_METHODS",
    "CSRFProtect",
]

#: Methods that must not change state, so they are never checked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Shortest key accepted: 256 bits, the size keyfob derives.
MIN_KEY_BYTES = 32
_TOKEN_BYTES = 32
_CONTEXT = b"keyfob.csrf.v2|"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_SHOWN = 120


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, normalised; ``None`` if it has none."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except (ValueError, AttributeError, TypeError):
        return None
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _shown(text: str) -> str:
    """A header value made safe for an error message: printable ASCII only, and short."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text[: _MAX_SHOWN + 1])
    return cleaned if len(cleaned) <= _MAX_SHOWN else cleaned[:_MAX_SHOWN] + "..."


class CSRFProtect:
    """Issues and checks CSRF tokens for one app.

    ``key`` signs the cookie (at least 32 bytes; derive it from the app secret, keep it apart from
    other keys). ``allowed_origins`` lists other origins allowed to post to the app, such as
    ``"https://admin.example.com"``; the request's own origin is always allowed. ``cookie`` is
    where the signed token lives (Auth.js uses ``__Host-authjs.csrf-token``).

    Raises :class:`~keyfob.errors.ConfigError` for a short key or an entry of
    ``allowed_origins`` that is not an origin.
    """

    __slots__ = ("_key", "allowed_origins", "cookie")

    def __init__(self, key: bytes, *, allowed_origins: Sequence[str] = (), cookie: CookieSpec) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the CSRF key must be at least {MIN_KEY_BYTES} random bytes",
                hint="derive it from KEYFOB_SECRET (generate one with `keyfob secret`)",
            )
        if isinstance(allowed_origins, str):
            raise ConfigError(
                "allowed_origins must be a list of origins, not a single string",
                hint='write allowed_origins=["https://app.example.com"]',
            )
        origins: set[str] = set()
        for entry in allowed_origins:
            origin = _origin_of(entry) if isinstance(entry, str) else None
            path = urlsplit(entry).path if origin else ""
            if origin is None or path not in ("", "/") or "?" in entry or "#" in entry or "@" in entry:
                raise ConfigError(
                    f"allowed_origins entry {_shown(str(entry))!r} is not an origin",
                    hint='write scheme://host[:port] with no path, e.g. "https://app.example.com"',
                )
            origins.add(origin)
        self._key = key
        #: Normalised origins (besides the request's own) allowed to send unsafe requests.
        self.allowed_origins: frozenset[str] = frozenset(origins)
        #: Where the signed token is kept.
        self.cookie = cookie

    def __repr__(self) -> str:
        return f"CSRFProtect(allowed_origins={sorted(self.allowed_origins)!r}, cookie={self.cookie!r})"

    def lists(self, origin: str | None) -> bool:
        """True when ``origin`` is one of :attr:`allowed_origins` (listed explicitly)."""
        return origin is not None and _origin_of(origin) in self.allowed_origins

    def _sign(self, token: str, binding: str) -> str:
        message = _CONTEXT + binding.encode("utf-8", "replace") + b"|" + token.encode("ascii")
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def _token_from_cookie(self, cookie_value: str | None, binding: str) -> str | None:
        """The token in a cookie value whose signature is valid, else ``None``. Never raises."""
        if not isinstance(cookie_value, str) or not cookie_value.isascii() or len(cookie_value) > 256:
            return None
        token, sep, signature = cookie_value.partition(".")
        if not sep or not token or not signature:
            return None
        if not hmac.compare_digest(self._sign(token, binding), signature):
            return None
        return token

    def issue(self, existing_cookie: str | None, *, binding: str = "") -> tuple[str, list[SetCookie]]:
        """The token to hand to forms and ``fetch``, plus the cookies to set.

        ``existing_cookie`` is the current value of :attr:`cookie` (``cookie.read(request_cookies)``).
        ``binding`` is the session the token is for (its id; ``""`` before sign-in). When the cookie
        is validly signed for that binding its token is reused and no cookie is set; otherwise a
        new random token (32 bytes) is made and a browser-session cookie holding
        ``token.signature`` is returned.
        """
        token = self._token_from_cookie(existing_cookie, binding)
        if token is not None:
            return token, []
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        return token, self.cookie.write(f"{token}.{self._sign(token, binding)}", max_age=None)

    def check(
        self,
        *,
        method: str,
        headers: Mapping[str, str],
        cookie_value: str | None,
        submitted: str | None,
        request_origin: str,
        binding: str = "",
    ) -> None:
        """Raise :class:`~keyfob.errors.CSRFError` unless this request may change state.

        ``headers`` has lower-case names; ``cookie_value`` is ``cookie.read(request_cookies)``;
        ``submitted`` is the token from the ``X-CSRF-Token`` header or ``csrf_token`` form field;
        ``request_origin`` is the app's own origin as the server sees it
        (``scheme://host[:port]``); ``binding`` is the session id the token must be bound to
        (``""`` when signed out). Safe methods return at once; any other method is checked.
        """
        if isinstance(method, str) and method.upper() in SAFE_METHODS:
            return
        self._check_origin(headers, request_origin)
        self.check_token(cookie_value, submitted, binding=binding)

    def check_origin(self, headers: Mapping[str, str], request_origin: str) -> None:
        """Only the Origin/Referer half of :meth:`check` (for requests that carry no cookies,
        hence no ambient authority to abuse, but must still not come from a foreign page)."""
        self._check_origin(headers, request_origin)

    def _check_origin(self, headers: Mapping[str, str], request_origin: str) -> None:
        own = _origin_of(request_origin) if isinstance(request_origin, str) else None
        allowed = self.allowed_origins | ({own} if own else set())
        origin = headers.get("origin")
        if origin is not None:
            if origin.strip().lower() == "null":
                raise CSRFError(
                    "the request has Origin: null (a sandboxed frame, a file: page or a cross-origin "
                    "redirect), so it cannot be trusted",
                    hint="submit the form from a page served by this app",
                )
            if _origin_of(origin) not in allowed:
                raise CSRFError(
                    f"the Origin {_shown(origin)} is not allowed; add it to allowed_origins if it should be"
                )
            return
        referer = headers.get("referer")
        if referer is not None and _origin_of(referer) not in allowed:
            raise CSRFError(
                f"the request came from {_shown(referer)} (Referer), whose origin is not allowed; "
                "add that origin to allowed_origins if it should be"
            )

    def check_token(self, cookie_value: str | None, submitted: str | None, *, binding: str = "") -> None:
        """The token half of :meth:`check`: ``submitted`` must match the cookie signed for ``binding``."""
        if not cookie_value:
            raise CSRFError(
                "the CSRF cookie is missing",
                hint="fetch a token from GET /auth/csrf first, over the same site, with cookies enabled",
            )
        token = self._token_from_cookie(cookie_value, binding)
        if token is None:
            raise CSRFError(
                "the CSRF cookie is invalid: altered, signed with another key, or issued for another "
                "session (the token changes at sign-in and sign-out)",
                hint="fetch a new token from GET /auth/csrf and retry",
            )
        if not submitted:
            raise CSRFError("no CSRF token was submitted")
        if not isinstance(submitted, str) or not submitted.isascii():
            raise CSRFError("the submitted CSRF token does not match the CSRF cookie",
                            hint="fetch a new token from GET /auth/csrf and send that one")
        if not hmac.compare_digest(submitted.strip(), token):
            raise CSRFError(
                "the submitted CSRF token does not match the CSRF cookie",
                hint="fetch a new token from GET /auth/csrf and send that one",
            )
