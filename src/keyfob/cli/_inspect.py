"""``keyfob inspect``: decode a session cookie and explain it, or say precisely why it is refused.

The tokens layer raises one opaque ``InvalidToken`` for every failure (on purpose: a server must
not tell an attacker which check failed). This module is the operator's side of that: it reads
the token's *unauthenticated* header itself (segment count, ``alg``/``enc``/``kid``/``typ``),
matches the ``kid`` against the configured secrets under several cookie names (the HKDF salt),
and re-runs the check with a huge leeway to tell "expired" / "issued in the future" from
"tampered". It never prints a secret, and only prints claims after they were authenticated.

Pure and sync except :func:`lookup_opaque` (a store read for database / refresh tokens).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError, InvalidToken, SessionExpired
from ..tokens import JWECodec, JWSVerifier, KeyRing, decode_v4
from ..tokens._parse import b64url_decode

__all__ = [
    "DEFAULT_COOKIE_NAME",
    "Report",
    "cookie_name_candidates",
    "inspect_token",
    "split_cookie",
]

DEFAULT_COOKIE_NAME = "keyfob.session-token"
AUTHJS_COOKIE_NAME = "authjs.session-token"
ACCESS_TYP = "at+jwt"
_PREFIXES = ("", "__Host-", "__Secure-")
_HUGE_LEEWAY = 10.0**12  # ~31,000 years: every time check passes, so only crypto/shape can fail
_OPAQUE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

Kind = Literal["jwe", "jwe-v4", "jws", "opaque", "unknown"]


@dataclass
class Report:
    """What ``keyfob inspect`` found out about one token."""

    valid: bool
    kind: Kind
    reason: str | None = None
    hint: str | None = None
    header: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    key_index: int | None = None
    key_count: int = 0
    cookie_name: str | None = None
    times: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def key_label(self) -> str | None:
        """``"secret #1 (newest)"`` / ``"secret #2 (older)"``, or None when no key matched."""
        if self.key_index is None:
            return None
        age = "newest" if self.key_index == 0 else "older"
        return f"secret #{self.key_index + 1} of {self.key_count} ({age})"

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` shape: ``{"valid", "kind", "reason", "hint", "payload", ...}``."""
        from .._clock import iso

        key = None
        if self.key_index is not None:
            key = {"index": self.key_index, "newest": self.key_index == 0, "of": self.key_count}
        return {
            "valid": self.valid,
            "kind": self.kind,
            "reason": self.reason,
            "hint": self.hint,
            "cookie_name": self.cookie_name,
            "key": key,
            "header": self.header,
            "payload": self.payload,
            "times": {k: iso(v) for k, v in self.times.items()},
            "notes": self.notes,
        }


def split_cookie(text: str) -> tuple[str | None, str]:
    """Accept ``TOKEN`` or ``name=TOKEN`` (as copied from a Cookie header or devtools).

    base64url never contains ``=``, so an ``=`` means a cookie name was pasted along.
    """
    text = text.strip().strip('"').strip("'").strip()
    if text.lower().startswith("cookie:"):
        text = text[7:].strip()
    text = text.rstrip(";").strip()
    if "=" in text:
        name, _, value = text.partition("=")
        return name.strip() or None, value.strip().strip('"')
    return None, text


def cookie_name_candidates(name: str) -> list[str]:
    """The names a cookie could have been made under, ``name`` first.

    keyfob's cookie is ``keyfob.session-token`` on http://localhost and ``__Host-keyfob.session-token``
    over HTTPS (``__Secure-`` with a Domain); Auth.js v5 uses ``authjs.session-token`` and
    ``__Secure-authjs.session-token``. The name is the HKDF salt, so it must match exactly.
    """
    base = name
    for p in _PREFIXES[1:]:
        if base.startswith(p):
            base = base[len(p) :]
    out = [name]
    for b in (base, AUTHJS_COOKIE_NAME):
        for p in _PREFIXES:
            if p + b not in out:
                out.append(p + b)
    return out


def _peek_json(segment: str) -> dict[str, Any] | None:
    """Decode an *unauthenticated* base64url JSON segment, or None when it is not one."""
    try:
        raw = b64url_decode(segment)
    except (InvalidToken, ValueError):
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _num(claims: dict[str, Any], name: str) -> float | None:
    v = claims.get(name)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _secrets_required(secrets: Sequence[str]) -> None:
    if not secrets:
        raise ConfigError(
            "no secret to decode the token with",
            hint="set KEYFOB_SECRET (comma list, newest first) or pass --secret",
        )


def inspect_token(
    token: str,
    *,
    secrets: Sequence[str],
    cookie_name: str = DEFAULT_COOKIE_NAME,
    cookie_name_given: bool = False,
    v4: bool = False,
    update_age: float = 86400,
    now: float | None = None,
) -> Report:
    """Explain ``token`` (a JWE session cookie, a hybrid access JWS or an opaque token).

    Raises ``ConfigError`` only when a secret is needed and none was given.
    """
    now = time.time() if now is None else now
    token = token.strip()
    if not token:
        return Report(False, "unknown", reason="the token is empty", hint="paste the cookie's value")
    if len(token) > 16 * 1024:
        return Report(
            False,
            "unknown",
            reason=f"the token is {len(token)} bytes, over keyfob's 16 KB limit",
            hint="if the cookie is chunked (name.0, name.1, ...), join the values in order",
        )
    parts = token.split(".")
    if len(parts) == 1:
        if len(token) == 43 and _OPAQUE_CHARS.issuperset(token):
            return Report(
                False,
                "opaque",
                reason="an opaque token (database session or hybrid refresh token) carries nothing to decode",
                hint="pass --store URL (or set KEYFOB_STORE) to look it up in the session store",
            )
        return Report(
            False,
            "unknown",
            reason="not a keyfob token: no '.' separators and not a 43-character opaque token",
            hint="copy the whole cookie value",
        )
    if len(parts) == 5:
        _secrets_required(secrets)
        return _inspect_jwe(
            parts,
            token,
            secrets=secrets,
            cookie_name=cookie_name,
            cookie_name_given=cookie_name_given,
            v4=v4,
            update_age=update_age,
            now=now,
        )
    if len(parts) == 3:
        _secrets_required(secrets)
        return _inspect_jws(parts, token, secrets=secrets, now=now)
    return Report(
        False,
        "unknown",
        reason=f"the token has {len(parts)} dot-separated segments; a JWE session cookie has 5 and a "
        "JWS access token 3",
        hint="it was probably cut when copied: copy the whole cookie value "
        "(and join name.0, name.1, ... chunks)",
    )


# -- JWE session cookies (jwt strategy, Auth.js v5, next-auth v4) ------------------------------------


def _inspect_jwe(
    parts: list[str],
    token: str,
    *,
    secrets: Sequence[str],
    cookie_name: str,
    cookie_name_given: bool,
    v4: bool,
    update_age: float,
    now: float,
) -> Report:
    header = _peek_json(parts[0])
    kind: Kind = "jwe"
    if header is None:
        return Report(
            False,
            kind,
            reason="the first segment is not base64url-encoded JSON, so this is not a JWE",
            hint="it was garbled or cut when copied: copy the whole cookie value",
        )
    alg, enc, kid = header.get("alg"), header.get("enc"), header.get("kid")
    if parts[1]:
        return Report(
            False,
            kind,
            header=header,
            reason=f"the JWE has an encrypted-key segment (alg={alg!r}); session cookies use "
            "alg 'dir' with an empty second segment",
            hint="this token is not a session cookie",
        )
    if v4 or (alg == "dir" and enc == "A256GCM"):
        return _inspect_v4(token, header, secrets=secrets, explicit=v4, now=now)
    if alg != "dir" or enc != "A256CBC-HS512":
        return Report(
            False,
            kind,
            header=header,
            reason=f"the header says alg={alg!r} enc={enc!r}; keyfob and Auth.js v5 cookies use "
            "alg 'dir' with enc 'A256CBC-HS512' (next-auth v4: 'A256GCM')",
            hint="keyfob refuses every other algorithm",
        )
    extra = set(header) - {"alg", "enc", "kid"}
    if extra:
        return Report(
            False,
            kind,
            header=header,
            reason=f"the header carries {', '.join(sorted(extra))}, which keyfob refuses "
            "(only alg, enc and kid are allowed)",
            hint="this token was not made by keyfob or Auth.js",
        )

    names = [cookie_name] if cookie_name_given else cookie_name_candidates(cookie_name)
    codecs = [(name, JWECodec(list(secrets), name)) for name in names]
    chosen: tuple[str, JWECodec] | None = None
    if isinstance(kid, str):
        chosen = next(((n, c) for n, c in codecs if kid in c.kids), None)
        if chosen is None:
            others = [n for n in cookie_name_candidates(cookie_name) if n not in names]
            found = next((n for n in others if kid in JWECodec(list(secrets), n).kids), None)
            if found is not None:
                return Report(
                    False,
                    kind,
                    header=header,
                    key_count=len(secrets),
                    reason=f"this token was made for the cookie name {found!r}, not {cookie_name!r} "
                    "(the cookie name is the key-derivation salt)",
                    hint=f"pass --cookie-name {found}",
                )
            tried = ", ".join(repr(n) for n in names) if len(names) <= 3 else f"{len(names)} cookie names"
            return Report(
                False,
                kind,
                header=header,
                key_count=len(secrets),
                reason=f"its key id matches none of your {len(secrets)} secret(s) under {tried}: it was "
                "made with another secret (or for another cookie name)",
                hint="check KEYFOB_SECRET (all current and previous secrets, newest first) and --cookie-name",
            )
    candidates = [chosen] if chosen is not None else codecs
    for name, codec in candidates:
        try:
            claims, index = codec.decode_verbose(token, now=now, leeway=_HUGE_LEEWAY)
        except (InvalidToken, SessionExpired):
            continue
        report = Report(
            True,
            kind,
            header=header,
            payload=claims,
            key_index=index,
            key_count=len(secrets),
            cookie_name=name,
        )
        if name != cookie_name:
            report.notes.append(f"made for the cookie name {name!r} (the HKDF salt), not {cookie_name!r}")
        _check_times(report, codec, token, now)
        _explain_session_times(report, claims, update_age=update_age, now=now)
        return report
    if chosen is not None:
        index = chosen[1].kids.index(str(kid))
        return Report(
            False,
            kind,
            header=header,
            key_index=index,
            key_count=len(secrets),
            cookie_name=chosen[0],
            reason=f"its key id names secret #{index + 1}, but the token does not decrypt with it: it "
            "was tampered with, truncated, or its claims are malformed (e.g. no 'exp')",
            hint="copy the whole cookie value; a token edited by hand is refused",
        )
    return Report(
        False,
        kind,
        header=header,
        key_count=len(secrets),
        reason=f"it does not decrypt with any of your {len(secrets)} secret(s) under "
        f"{'the cookie name ' + repr(cookie_name) if cookie_name_given else 'the usual cookie names'}: "
        "wrong secret, wrong cookie name, or a tampered token",
        hint="check KEYFOB_SECRET (newest first, include old secrets) and --cookie-name",
    )


def _check_times(report: Report, codec: JWECodec, token: str, now: float) -> None:
    """The token is authentic; now apply the real time checks (no leeway) and explain a failure."""
    try:
        codec.decode_verbose(token, now=now, leeway=0)
    except SessionExpired as exc:
        _expired(report, exc, now)
    except InvalidToken:
        _future(report, now)


def _expired(report: Report, exc: SessionExpired, now: float) -> None:
    from .._clock import iso

    report.valid = False
    at = exc.expired_at if exc.expired_at is not None else _num(report.payload or {}, "exp")
    report.reason = f"expired at {iso(at)}" if at is not None else "expired"
    if at is not None:
        report.reason += f" ({_ago(now - at)} ago)"
    report.hint = "sign in again; the claims below are authentic but no longer accepted"


def _future(report: Report, now: float) -> None:
    from .._clock import iso

    claims = report.payload or {}
    report.valid = False
    for name, what in (("nbf", "not valid before"), ("iat", "issued at")):
        v = _num(claims, name)
        if v is not None and v > now:
            report.reason = f"{what} {iso(v)}, which is in the future (this machine's clock says {iso(now)})"
            report.hint = "check the clocks of the server that made it and of this machine"
            return
    report.reason = "authentic, but its time claims are malformed"
    report.hint = "this token was not made by keyfob or Auth.js"


def _explain_session_times(report: Report, claims: dict[str, Any], *, update_age: float, now: float) -> None:
    iat, exp = _num(claims, "iat"), _num(claims, "exp")
    ct, auth = _num(claims, "ct"), _num(claims, "auth_time")
    if ct is not None:
        report.times["created"] = ct
    if auth is not None:
        report.times["authenticated"] = auth
    if iat is not None:
        report.times["issued"] = iat
        report.times["rolls_at"] = iat + update_age
    if exp is not None:
        report.times["expires"] = exp
    if "sid" not in claims and "ct" not in claims:
        report.notes.append("no sid/ct claims: this looks like an Auth.js cookie, not one keyfob made")


def _inspect_v4(
    token: str, header: dict[str, Any], *, secrets: Sequence[str], explicit: bool, now: float
) -> Report:
    kind: Kind = "jwe-v4"
    if header.get("alg") != "dir" or header.get("enc") != "A256GCM" or set(header) != {"alg", "enc"}:
        return Report(
            False,
            kind,
            header=header,
            reason=f"the header says alg={header.get('alg')!r} enc={header.get('enc')!r}; next-auth v4 "
            "cookies have exactly alg 'dir' and enc 'A256GCM'",
            hint="drop --v4 for Auth.js v5 / keyfob cookies" if explicit else None,
        )
    for index, secret in enumerate(secrets):
        try:
            claims = decode_v4(token, secret=secret, now=now, leeway=_HUGE_LEEWAY)
        except (InvalidToken, SessionExpired):
            continue
        report = Report(
            True,
            kind,
            header=header,
            payload=claims,
            key_index=index,
            key_count=len(secrets),
            cookie_name="next-auth.session-token",
        )
        if not explicit:
            report.notes.append(
                "A256GCM: read as a next-auth v4 cookie (the key does not depend on the name)"
            )
        try:
            decode_v4(token, secret=secret, now=now, leeway=0)
        except SessionExpired as exc:
            _expired(report, exc, now)
        except InvalidToken:
            _future(report, now)
        iat, exp = _num(claims, "iat"), _num(claims, "exp")
        if iat is not None:
            report.times["issued"] = iat
        if exp is not None:
            report.times["expires"] = exp
        return report
    return Report(
        False,
        kind,
        header=header,
        key_count=len(secrets),
        reason=f"a next-auth v4 cookie that does not decrypt with any of your {len(secrets)} secret(s): "
        "wrong NEXTAUTH_SECRET or a tampered token",
        hint="pass the v4 app's NEXTAUTH_SECRET with --secret",
    )


# -- JWS access tokens (hybrid strategy) -------------------------------------------------------------


def _access_ring(secrets: Sequence[str], alg: str) -> KeyRing:
    """The exact key ring a Keyfob with these secrets signs access tokens with."""
    from ..engine import Keyfob

    fob = Keyfob(
        strategy="hybrid",
        secret=list(secrets),
        store="memory://",
        feed=None,
        auto_migrate=False,
        jwks=alg == "EdDSA",
    )
    return fob.access_ring


def _inspect_jws(parts: list[str], token: str, *, secrets: Sequence[str], now: float) -> Report:
    kind: Kind = "jws"
    header = _peek_json(parts[0])
    if header is None:
        return Report(
            False,
            kind,
            reason="the first segment is not base64url-encoded JSON, so this is not a JWS",
            hint="it was garbled or cut when copied: copy the whole token",
        )
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if alg not in ("HS256", "EdDSA"):
        why = "an unsigned token" if str(alg).lower() == "none" else f"alg {alg!r}"
        return Report(
            False,
            kind,
            header=header,
            reason=f"{why}: keyfob access tokens are signed with HS256 or EdDSA, nothing else is accepted",
            hint="this token was not made by keyfob",
        )
    if typ != ACCESS_TYP:
        return Report(
            False,
            kind,
            header=header,
            reason=f"typ is {typ!r}, not {ACCESS_TYP!r}: not a keyfob access token",
            hint="keyfob only accepts access tokens where access tokens are expected",
        )
    if not isinstance(kid, str):
        return Report(
            False,
            kind,
            header=header,
            reason="the header has no kid; keyfob requires one",
            hint="this token was not made by keyfob",
        )
    try:
        ring = _access_ring(secrets, str(alg))
    except ConfigError as exc:
        return Report(
            False,
            kind,
            header=header,
            reason=f"cannot build the access-token keys: {exc.message}",
            hint=exc.hint or None,
        )
    except AttributeError:  # a keyfob build without EdDSA key derivation
        return Report(
            False,
            kind,
            header=header,
            reason="this keyfob cannot derive EdDSA access-token keys",
            hint="upgrade keyfob, or verify the token against the server's /.well-known/jwks.json",
        )
    kids = [k.kid for k in ring]
    if kid not in kids:
        return Report(
            False,
            kind,
            header=header,
            key_count=len(secrets),
            reason=f"its key id matches none of your {len(secrets)} secret(s): it was signed with another "
            "secret"
            + (" (or the server publishes EdDSA keys and this is an older key)" if alg == "EdDSA" else ""),
            hint="check KEYFOB_SECRET (all current and previous secrets, newest first)",
        )
    index = kids.index(kid)
    unverified = _peek_json(parts[1]) or {}
    aud = unverified.get("aud")
    verifier = JWSVerifier(
        ring, typ=ACCESS_TYP, audience=aud if isinstance(aud, str) else None, algorithms=(alg,)
    )
    try:
        claims = verifier.verify(token, now=now, leeway=_HUGE_LEEWAY)
    except (InvalidToken, SessionExpired):
        return Report(
            False,
            kind,
            header=header,
            key_index=index,
            key_count=len(secrets),
            reason=f"the signature does not verify with secret #{index + 1}: the token was tampered with "
            "or truncated, or its claims are malformed",
            hint="copy the whole token; a token edited by hand is refused",
        )
    report = Report(True, kind, header=header, payload=claims, key_index=index, key_count=len(secrets))
    try:
        verifier.verify(token, now=now, leeway=0)
    except SessionExpired as exc:
        _expired(report, exc, now)
        report.hint = (
            "access tokens live minutes; the refresh cookie gets a new one (POST /auth/refresh, "
            "or the middleware does it on the next request)"
        )
    except InvalidToken:
        _future(report, now)
    iat, exp = _num(claims, "iat"), _num(claims, "exp")
    for name, key in (
        ("ct", "created"),
        ("auth_time", "authenticated"),
        ("iat", "issued"),
        ("exp", "expires"),
    ):
        v = _num(claims, name)
        if v is not None:
            report.times[key] = v
    if iat is not None and exp is not None:
        margin = min(60.0, (exp - iat) / 5)
        report.times["refreshes_at"] = exp - margin
    report.notes.append("a hybrid access token: its session lives on as the refresh token in the store")
    return report


def opaque_hash(token: str) -> bytes:
    """SHA-256 of an opaque token: how stores key it."""
    return hashlib.sha256(token.encode()).digest()


def _ago(seconds: float) -> str:
    from ._util import duration

    return duration(seconds)
