"""The guarded floors: the same FastAPI endpoint behind the cheapest hand-written guard of each kind.

No guarded endpoint can reach an open endpoint's speed (FastAPI's ``Depends`` alone costs tens of
µs), so keyfob is compared with the floor guard *of its own kind*: the least a hand-written
``Depends`` can do to accept the same request. Each guard reads one cookie from
``request.cookies``, checks it, checks ``exp`` and returns the user:

* ``floor_hs256`` — a stdlib-only HS256 JWT check (``hmac`` + ``base64`` + ``json``): the floor for
  signed tokens (keyfob's ``hybrid`` access token);
* ``floor_jwe`` — keyfob's own ``jwt``-strategy cookie (JWE ``dir`` + ``A256CBC-HS512``, Auth.js key
  derivation) decrypted by hand with ``cryptography``: the floor for encrypted cookies;
* ``floor_sqlite`` — stdlib ``sqlite3``: SHA-256 of keyfob's ``database`` cookie, one primary-key
  lookup in keyfob's own table on a held connection, and an ``expires_at`` check: the floor for
  database sessions;
* ``pyjwt`` — the usual way to do the first one: ``jwt.decode`` from PyJWT (a peer, not a floor).

Every guard is an ``async def`` dependency, as keyfob's ``require_session`` is (a plain ``def``
would be sent to FastAPI's thread pool and cost far more). The same builders serve the in-process
ASGI benchmark (:mod:`keyfob._bench.asgi`) and the uvicorn servers (:mod:`keyfob._bench.apps`);
each takes a JSON-able ``conf`` (keys as hex, cookie names, the SQLite path) so a server process
builds exactly what the parent measures.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the real ``Depends(guard)`` of a
# guard defined in a function (a string annotation would be evaluated in the module's globals).

import base64
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request

from ._core import SECRET, SESSION_DATA, USER_ID

__all__ = [
    "FLOOR_COOKIE",
    "GUARDS",
    "access_claims",
    "guard_app",
    "hs256_conf",
    "jwe_conf",
    "open_app",
    "sqlite_conf",
]

#: The cookie the HS256 and PyJWT guards read (keyfob's own cookies keep their own names).
FLOOR_COOKIE = "tok"
_HS256_HEADER = '{"alg":"HS256","typ":"JWT"}'


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _denied() -> HTTPException:
    return HTTPException(status_code=401, detail="not signed in")


def access_claims(cookies: dict[str, str]) -> dict[str, Any] | None:
    """The claims of the hybrid access token among ``cookies`` (the HS256 floor signs the same)."""
    for value in cookies.values():
        parts = value.split(".")
        if len(parts) == 3:
            try:
                claims = json.loads(_b64d(parts[1]))
            except ValueError:
                continue
            if isinstance(claims, dict) and "sub" in claims:
                return claims
    return None


# -- tokens and confs (made in the parent; JSON-able, so a server process gets the same) -------------
def hs256_conf(claims: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(conf for the HS256 and PyJWT guards, the cookies a signed-in browser sends them)."""
    now = int(time.time())
    claims = claims or {"sub": USER_ID, **SESSION_DATA, "iat": now, "exp": now + 600, "jti": "x" * 22}
    claims = {**claims, "exp": max(int(claims.get("exp", 0)), now + 3600)}  # outlives a long run
    key = hashlib.sha256(b"kfbench hs256 key").digest()
    signing_input = (
        f"{_b64e(_HS256_HEADER.encode())}.{_b64e(json.dumps(claims, separators=(',', ':')).encode())}"
    )
    token = f"{signing_input}.{_b64e(hmac.digest(key, signing_input.encode(), 'sha256'))}"
    aud = claims.get("aud")
    return {"key": key.hex(), "cookie": FLOOR_COOKIE, "aud": aud}, {FLOOR_COOKIE: token}


def jwe_conf(cookies: dict[str, str]) -> dict[str, Any]:
    """Conf for the JWE guard, from the cookies keyfob's ``jwt`` strategy issued."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    name = next(iter(cookies))
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=name.encode(),
        info=f"Auth.js Generated Encryption Key ({name})".encode(),
    ).derive(SECRET.encode())
    return {"key": key.hex(), "cookie": name}


def sqlite_conf(path: str, cookies: dict[str, str], table: str = "keyfob_sessions") -> dict[str, Any]:
    """Conf for the sqlite3 guard: keyfob's own SQLite file and ``database`` cookie name."""
    return {"path": path, "cookie": next(iter(cookies)), "table": table}


# -- the guards ------------------------------------------------------------------------------------------
Guard = Callable[[Request], Awaitable[str]]


def _hs256_guard(conf: dict[str, Any]) -> Guard:
    key = bytes.fromhex(conf["key"])
    header = _b64e(_HS256_HEADER.encode())
    name = conf["cookie"]

    async def guard(request: Request) -> str:
        token = request.cookies.get(name)
        if not token:
            raise _denied()
        try:
            h, p, s = token.split(".")
            if h != header:
                raise ValueError("alg")
            if not hmac.compare_digest(hmac.digest(key, f"{h}.{p}".encode(), "sha256"), _b64d(s)):
                raise ValueError("signature")
            claims = json.loads(_b64d(p))
        except ValueError:
            raise _denied() from None
        if claims["exp"] <= time.time():
            raise _denied()
        sub: str = claims["sub"]
        return sub

    return guard


def _jwe_guard(conf: dict[str, Any]) -> Guard:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.padding import PKCS7

    key = bytes.fromhex(conf["key"])
    mac_key, aes = key[:32], algorithms.AES(key[32:])
    name = conf["cookie"]

    async def guard(request: Request) -> str:
        token = request.cookies.get(name)
        if not token:
            raise _denied()
        try:
            h, _ek, iv_b, ct_b, tag_b = token.split(".")
            iv, ct, tag = _b64d(iv_b), _b64d(ct_b), _b64d(tag_b)
            aad = h.encode("ascii")
            mac = hmac.digest(mac_key, aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), "sha512")[:32]
            if not hmac.compare_digest(mac, tag):
                raise ValueError("tag")
            d = Cipher(aes, modes.CBC(iv)).decryptor()
            u = PKCS7(128).unpadder()
            claims = json.loads(u.update(d.update(ct) + d.finalize()) + u.finalize())
        except ValueError:
            raise _denied() from None
        if claims["exp"] <= time.time():
            raise _denied()
        sub: str = claims["sub"]
        return sub

    return guard


def _sqlite_guard(conf: dict[str, Any]) -> Guard:
    db = sqlite3.connect(conf["path"], check_same_thread=False)
    sql = f"SELECT user_id, expires_at FROM {conf['table']} WHERE token_hash = ?"
    name = conf["cookie"]
    sha256 = hashlib.sha256

    async def guard(request: Request) -> str:
        token = request.cookies.get(name)
        if not token:
            raise _denied()
        row = db.execute(sql, (sha256(token.encode()).digest(),)).fetchone()
        if row is None or row[1] <= time.time():  # expires_at: epoch seconds
            raise _denied()
        sub: str = row[0]
        return sub

    return guard


def _pyjwt_guard(conf: dict[str, Any]) -> Guard:
    import jwt as pyjwt

    key = bytes.fromhex(conf["key"])
    name, aud = conf["cookie"], conf.get("aud")

    async def guard(request: Request) -> str:
        token = request.cookies.get(name)
        if not token:
            raise _denied()
        try:
            claims = pyjwt.decode(token, key, algorithms=["HS256"], audience=aud)
        except pyjwt.PyJWTError:
            raise _denied() from None
        sub: str = claims["sub"]
        return sub

    return guard


#: guard kind → builder; the ``kind`` of a :func:`guard_app` (and of a server's ``KFBENCH_APP``).
GUARDS: dict[str, Callable[[dict[str, Any]], Guard]] = {
    "floor_hs256": _hs256_guard,
    "floor_jwe": _jwe_guard,
    "floor_sqlite": _sqlite_guard,
    "pyjwt": _pyjwt_guard,
}


def _bare() -> FastAPI:
    return FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def open_app() -> FastAPI:
    """The endpoint with no guard at all (what every guard's cost is measured over)."""
    app = _bare()

    @app.get("/p")
    async def protected() -> dict[str, Any]:
        return {"ok": True, "user": "anonymous"}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    return app


def guard_app(kind: str, conf: dict[str, Any]) -> FastAPI:
    """The same ``GET /p`` behind the guard ``kind`` (one of :data:`GUARDS`)."""
    guard = GUARDS[kind](conf)
    app = _bare()

    @app.get("/p")
    async def protected(user: Annotated[str, Depends(guard)]) -> dict[str, Any]:
        return {"ok": True, "user": user}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    return app
