"""Shared pieces of the security suite: the app under attack, an HTTP harness, and JOSE forging.

Forged tokens are built with ``cryptography`` and the standard library only, never with
keyfob's own encoder, so a bug in keyfob's encoder cannot hide the same bug in its decoder.
Where an attack needs the real key (a correct MAC over a bad header, say), the key is
derived here the way the spec says (HKDF, RFC 5869) from the app's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, FastAPI, Request

from keyfob import FakeClock, Keyfob, Session
from keyfob.fastapi import install, require_role, require_session, sign_in

SECRET = "kf-sec-secret-0123456789abcdef0123456789abcdef0123456789abcd"
OLD_SECRET = "kf-sec-old-secret-fedcba9876543210fedcba9876543210fedcba98"
ROTATED_OUT_SECRET = "kf-sec-gone-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
PASSWORD = "correct-horse-battery-staple-kf-sec-pw"
BASE_URL = "http://localhost"
ORIGIN = "http://localhost"
STRATEGIES = ("jwt", "database", "hybrid")


# -- base64url / JSON --------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def raw_json(text: str) -> bytes:
    """JSON written by hand (duplicate keys, odd numbers): kept byte for byte."""
    return text.encode()


# -- JWS (hybrid access tokens) ---------------------------------------------------------------------


def jws_hs256(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes, key: bytes) -> str:
    h = b64(header if isinstance(header, bytes) else dumps(header))
    p = b64(payload if isinstance(payload, bytes) else dumps(payload))
    sig = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}"


def jws_eddsa(header: Mapping[str, Any], payload: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    h, p = b64(dumps(header)), b64(dumps(payload))
    return f"{h}.{p}.{b64(key.sign(f'{h}.{p}'.encode()))}"


def jws_unsigned(header: Mapping[str, Any], payload: Mapping[str, Any], signature: str = "") -> str:
    return f"{b64(dumps(header))}.{b64(dumps(payload))}.{signature}"


# -- JWE (jwt strategy cookies: dir + A256CBC-HS512, Auth.js key derivation) --------------------------


def authjs_key(secret: str, salt: str) -> bytes:
    """HKDF-SHA256(secret, salt=cookie name, info="Auth.js Generated Encryption Key (<salt>)", 64)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=salt.encode(),
        info=f"Auth.js Generated Encryption Key ({salt})".encode(),
    ).derive(secret.encode())


def jwe_cbc_hs512(
    header: Mapping[str, Any] | bytes,
    plaintext: bytes,
    key: bytes,
    *,
    iv: bytes | None = None,
    pad: bool = True,
    tag_len: int = 32,
    encrypted_key: str = "",
) -> str:
    """RFC 7516/7518 §5.2 A256CBC-HS512 compact JWE, MAC'd correctly over whatever header is given."""
    header_b64 = b64(header if isinstance(header, bytes) else dumps(header))
    iv = os.urandom(16) if iv is None else iv
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key[32:]), modes.CBC(iv)).encryptor()
    ct = enc.update(plaintext) + enc.finalize()
    aad = header_b64.encode()
    tag = hmac.new(key[:32], aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha512).digest()
    return f"{header_b64}.{encrypted_key}.{b64(iv)}.{b64(ct)}.{b64(tag[:tag_len])}"


# -- the app under attack -----------------------------------------------------------------------------


def make_app(fob: Keyfob) -> FastAPI:
    """A small app shaped like the demo: password sign-in, a protected page, an admin page, a form."""
    app = FastAPI()
    install(app, fob)

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body.get("password") != PASSWORD:
            return {"ok": False}
        issued = await sign_in(request, str(body["user"]), {"role": body.get("role", "user"), "name": "Ada"})
        return {"ok": True, "id": issued.session.id}

    @app.get("/me")
    async def me(session: Annotated[Session, Depends(require_session)]) -> dict[str, Any]:
        return {"user": session.user_id, "role": session.role, "sid": session.id}

    @app.get("/admin", dependencies=[Depends(require_role("admin"))])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/action")
    async def action(session: Annotated[Session, Depends(require_session)]) -> dict[str, bool]:
        return {"ok": True}

    return app


def make_fob(
    strategy: str, store: str, clock: FakeClock, *, secrets: tuple[str, ...] = (SECRET,), **options: Any
) -> Keyfob:
    return Keyfob(strategy=strategy, secret=list(secrets), store=store, clock=clock, **options)


@dataclass
class Env:
    """One strategy's app, a browser-like client with a cookie jar, and what attacks need."""

    strategy: str
    fob: Keyfob
    clock: FakeClock
    app: FastAPI
    browser: httpx.AsyncClient
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def session_cookie(self) -> str:
        return self.fob.profile(False).session.name

    @property
    def refresh_cookie(self) -> str:
        return self.fob.profile(False).refresh.name

    def now(self) -> int:
        return int(self.clock())

    # keys an attacker with the app's secret would have (to isolate one defect per case)
    def jwe_key(self, secret: str = SECRET, salt: str | None = None) -> bytes:
        return authjs_key(secret, self.session_cookie if salt is None else salt)

    def access_key(self) -> bytes:
        key = self.fob.access_ring.current
        assert key.secret is not None
        return key.secret

    def access_kid(self) -> str:
        return self.fob.access_ring.current.kid

    def jwe_kid(self) -> str:
        from keyfob.tokens import JWECodec

        return JWECodec([SECRET], self.session_cookie).kids[0]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Plausible claims for this strategy (valid unless overridden)."""
        now = self.now()
        base: dict[str, Any] = {
            "sub": "victim",
            "sid": self.notes.get("seed_sid", "AAAAAAAAAAAAAAAAAAAAAA"),
            "ver": 0,
            "iat": now,
            "exp": now + 300,
            "jti": "j-1",
            "auth_time": now,
            "ct": now,
            "role": "admin",
        }
        if self.strategy == "hybrid":
            base["aud"] = "keyfob"
        if self.fob.view.epoch is not None:  # the store epoch the app's tokens carry
            base["ep"] = self.fob.view.epoch
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not _DROP}

    def jws_header(self, **overrides: Any) -> dict[str, Any]:
        h: dict[str, Any] = {"alg": "HS256", "kid": self.access_kid(), "typ": "at+jwt"}
        h.update(overrides)
        return {k: v for k, v in h.items() if v is not _DROP}

    def jwe_header(self, **overrides: Any) -> dict[str, Any]:
        h: dict[str, Any] = {"alg": "dir", "enc": "A256CBC-HS512", "kid": self.jwe_kid()}
        h.update(overrides)
        return {k: v for k, v in h.items() if v is not _DROP}

    def token(
        self,
        *,
        header: Mapping[str, Any] | None = None,
        claims: Mapping[str, Any] | None = None,
        raw_claims: bytes | None = None,
        raw_header: bytes | None = None,
    ) -> str:
        """A token correctly keyed for this strategy's cookie, with the given header/claims.

        jwt → JWE under the real key; hybrid and database → HS256 JWS under the real access key
        (for database the cookie is an opaque token, so any JWS is garbage to it: it must say 401).
        """
        body = (
            raw_claims if raw_claims is not None else dumps(claims if claims is not None else self.claims())
        )
        if self.strategy == "jwt":
            hdr: Mapping[str, Any] | bytes = (
                raw_header
                if raw_header is not None
                else (header if header is not None else self.jwe_header())
            )
            return jwe_cbc_hs512(hdr, body, self.jwe_key())
        hdr = raw_header if raw_header is not None else (header if header is not None else self.jws_header())
        return jws_hs256(hdr, body, self.access_key())

    async def login(
        self, user: str = "victim", role: str = "user", client: httpx.AsyncClient | None = None
    ) -> dict[str, str]:
        """Sign in over HTTP; return the cookies the browser now holds."""
        c = client or self.browser
        r = await c.post(
            "/login", json={"user": user, "password": PASSWORD, "role": role}, headers=await csrf_headers(c)
        )
        assert r.status_code == 200 and r.json()["ok"], r.text
        return dict(c.cookies.items())


_DROP: Any = object()
DROP: Any = _DROP  # pass as a claim/header value to leave it out


async def csrf_headers(client: httpx.AsyncClient) -> dict[str, str]:
    token = (await client.get("/auth/csrf")).json()["csrfToken"]
    return {"x-csrf-token": token, "origin": ORIGIN}


def cookie_header(cookies: Mapping[str, str] | list[tuple[str, str]]) -> str:
    items = cookies.items() if isinstance(cookies, Mapping) else cookies
    return "; ".join(f"{k}={v}" for k, v in items)


@asynccontextmanager
async def open_env(
    strategy: str,
    tmp_path: Path,
    *,
    clock: FakeClock | None = None,
    secrets: tuple[str, ...] = (SECRET,),
    **options: Any,
) -> AsyncIterator[Env]:
    clock = clock or FakeClock()
    fob = make_fob(strategy, f"sqlite:///{tmp_path / f'kf-{strategy}.db'}", clock, secrets=secrets, **options)
    app = make_app(fob)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as browser:
        await browser.get("/auth/session")  # warm up: schema, revocation view
        # A live session of "victim", so forged tokens naming its sid fail only for their own defect.
        seed = await fob.create("victim", {"role": "user"}, secure=False)
        try:
            yield Env(
                strategy=strategy,
                fob=fob,
                clock=clock,
                app=app,
                browser=browser,
                notes={"seed_sid": seed.session.id},
            )
        finally:
            await fob.close()


async def timed_request(
    app: FastAPI, method: str, path: str, *, headers: list[tuple[bytes, bytes]], content: bytes | None = None
) -> tuple[httpx.Response, float]:
    """One request from a fresh client (no cookie jar): exactly the bytes the attacker chose.

    Returns the response and the CPU seconds this process spent on it (app and client run in-process),
    which other processes' load does not inflate as it does wall-clock time."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        request = c.build_request(method, path, content=content)
        for k in [k for k in request.headers if k.lower() == "cookie"]:
            del request.headers[k]
        raw = [(k, v) for k, v in request.headers.raw if k.lower() not in {h.lower() for h, _ in headers}]
        request.headers = httpx.Headers(raw + headers)
        start = time.process_time()
        response = await c.send(request)
        return response, time.process_time() - start
