"""ASVS points not covered elsewhere: randomness of what must not be guessed (11.5.1, 7.2.3),
cookie sizes (3.3.5), tokens only in Set-Cookie for browsers (3.3.4), no state change on safe
methods (3.5.3), a visible sign-out on every signed-in demo page (7.4.4)."""

from __future__ import annotations

import ast
import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from keyfob import Keyfob
from keyfob.demo import create_app
from keyfob.web import CookieSpec

from ._support import SECRET, csrf_headers, open_env

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ("jwt", "database", "hybrid")
B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _bits(value: str) -> int:
    assert B64URL.fullmatch(value), "not base64url"
    return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))) * 8


# -- 11.5.1 / 7.2.3: CSPRNG, ≥ 128 bits, unique -------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_tokens_and_ids_are_unique_and_carry_at_least_128_random_bits(strategy: str) -> None:
    fob = Keyfob(strategy=strategy, secret=SECRET, store=f"memory://random-{strategy}")
    try:
        issued = [await fob.create(f"u{i % 7}", secure=False) for i in range(200)]
    finally:
        await fob.close()
    ids = [i.session.id for i in issued]
    tokens = [i.access_token for i in issued]
    assert len(set(ids)) == len(ids) and len(set(tokens)) == len(tokens)
    assert all(_bits(sid) >= 128 for sid in ids)  # public handles, still unguessable
    if strategy == "database":  # opaque reference token: 256 bits
        assert all(t is not None and len(t) == 43 and _bits(t) == 256 for t in tokens)
    if strategy == "hybrid":  # opaque refresh token: 256 bits
        refresh = [i.refresh_token for i in issued]
        assert len(set(refresh)) == len(refresh)
        assert all(t is not None and len(t) == 43 and _bits(t) == 256 for t in refresh)


def test_csrf_tokens_carry_256_random_bits() -> None:
    from keyfob.web import CSRFProtect

    protect = CSRFProtect(b"k" * 32, cookie=CookieSpec("kf.csrf", secure=True))
    tokens = {protect.issue(None)[0] for _ in range(200)}
    assert len(tokens) == 200 and all(_bits(t) >= 256 for t in tokens)


def test_unguessable_values_come_from_the_os_csprng() -> None:
    """src/keyfob never imports ``random``; ``uuid`` only for the JWE ``jti`` (Auth.js's claim, not a
    secret: it sits inside the encrypted token) and for reading UUID-typed id columns."""
    offenders = []
    for path in sorted((ROOT / "src" / "keyfob").rglob("*.py")):
        if "_bench" in path.parts:
            continue
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            if "random" in names:
                offenders.append(f"{rel}:{node.lineno}: imports random")
            allowed = ("src/keyfob/tokens/_authjs.py", "src/keyfob/stores/sql/authjs.py")
            if "uuid" in names and rel not in allowed:
                offenders.append(f"{rel}:{node.lineno}: imports uuid")
    assert not offenders, offenders
    from keyfob.strategies import _base

    source = Path(_base.__file__).read_text()
    assert "secrets.token_urlsafe(32)" in source and "secrets.token_bytes(16)" in source


# -- 3.3.5: name + value ≤ 4096 bytes ------------------------------------------------------------------------


async def test_every_cookie_fits_in_4096_bytes_even_for_a_large_session() -> None:
    fob = Keyfob(strategy="jwt", secret=SECRET, store="memory://big")
    try:
        issued = await fob.create("u1", {"blob": "x" * 9000}, secure=True)
    finally:
        await fob.close()
    assert len(issued.cookies) >= 3  # chunked
    for c in issued.cookies:
        assert len(c.name.encode()) + len(c.value.encode()) <= 4096, c.name
        assert c.name.startswith("__Host-") and c.secure and c.httponly


# -- 3.3.4: browsers get tokens only through Set-Cookie ---------------------------------------------------


async def test_cookie_refresh_puts_tokens_only_in_set_cookie(tmp_path: Path) -> None:
    """A browser refreshing with its cookie gets the new tokens as HttpOnly cookies, never in the
    JSON body where page scripts could read them; a client that sends its refresh token in the body
    (mobile, CLI) gets them in the body."""
    async with open_env("hybrid", tmp_path) as env:
        await env.login()
        before = dict(env.browser.cookies.items())
        response = await env.browser.post("/auth/refresh", headers=await csrf_headers(env.browser))
        assert response.status_code == 200, response.text
        after = dict(env.browser.cookies.items())
        assert after[env.session_cookie] != before[env.session_cookie]
        assert after[env.refresh_cookie] != before[env.refresh_cookie]
        for name in (env.session_cookie, env.refresh_cookie):
            assert after[name] not in response.text and before[name] not in response.text
        body = response.json()
        assert body["user"]["id"] == "victim" and body.get("access_token") is None


# -- 3.5.3: state changes only through unsafe methods -----------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_state_changing_auth_routes_refuse_safe_methods(strategy: str, tmp_path: Path) -> None:
    async with open_env(strategy, tmp_path) as env:
        await env.login()
        sid = (await env.browser.get("/me")).json()["sid"]
        for method in ("GET", "HEAD"):
            paths = ("/auth/signout", "/auth/refresh", "/auth/sessions/revoke-others",
                     f"/auth/sessions/{sid}")
            for path in paths:
                response = await env.browser.request(method, path)
                if path.endswith(sid):  # GET /auth/sessions/{id} does not exist: only DELETE does
                    assert response.status_code in (404, 405), (method, path, response.status_code)
                else:
                    assert response.status_code == 405, (method, path, response.status_code)
        assert (await env.browser.get("/me")).status_code == 200  # still signed in: nothing changed


# -- 7.4.4: a visible sign-out on every page that needs a session -------------------------------------------


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[FastAPI]:
    app = create_app("database", None, tmp_path, SECRET,
                     password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    async with app.router.lifespan_context(app):
        yield app


async def test_every_signed_in_demo_page_offers_sign_out(demo: FastAPI) -> None:
    transport = httpx.ASGITransport(app=demo)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        page = await client.get("/signup")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        await client.post("/signup", data={"email": "ada@example.com", "password": "long enough pw",
                                           "csrf_token": token.group(1)})
        for path in ("/dashboard", "/devices", "/password"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert re.search(r'<form method="post" action="/signout"[^>]*>', response.text), path
            assert ">Sign out</button>" in response.text, path
