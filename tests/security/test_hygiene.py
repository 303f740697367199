"""Hygiene: nothing secret in logs, constant-time comparisons, argon2 for demo passwords, and
security headers on every demo response.

The log check itself runs over the whole suite (``_log_hygiene.py``, registered by
``tests/conftest.py``); the tests here prove that it would catch a leak.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from fastapi import FastAPI

from keyfob import Keyfob
from keyfob.demo import create_app
from keyfob.demo._app import SECURITY_HEADERS
from keyfob.demo._users import Users

from ._log_hygiene import LogCollector, hygiene

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "keyfob"
HYGIENE_SECRET = "kf-hygiene-secret-0123456789abcdef0123456789abcdef012345"
HYGIENE_PASSWORD = "kf-hygiene-password-tr0ub4dor&3"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests only
STRATEGIES = ("jwt", "database", "hybrid")


# -- the suite-wide log check catches what it must -------------------------------------------------------


def test_log_hygiene_hooks_are_installed() -> None:
    """If a refactor renames what the plugin wraps, this fails instead of the check going blind."""
    hooks = set(hygiene().hooks)
    for name in (
        "Settings.__post_init__",
        "CookieSpec.write",
        "CSRFProtect.issue",
        "JWECodec.encode",
        "JWSSigner.sign",
        "Keyfob.create",
        "Keyfob.refresh",
        "Keyfob.authenticate",
        "Users.add",
        "Users.authenticate",
    ):
        assert name in hooks, f"{name} is not wrapped: the log hygiene check cannot see what it issues"
    assert logging.getLogger("keyfob").getEffectiveLevel() == logging.DEBUG
    assert hygiene().collector in logging.getLogger().handlers


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_issued_token_and_secret_is_known_to_the_check(strategy: str) -> None:
    registry = hygiene().registry
    fob = Keyfob(strategy=strategy, secret=HYGIENE_SECRET, store=f"memory://hygiene-{strategy}")
    try:
        assert HYGIENE_SECRET in registry
        issued = await fob.create("u1", {"role": "user"}, secure=False)
        assert issued.access_token in registry
        assert all(c.value in registry for c in issued.cookies)
        if strategy == "hybrid":
            assert issued.refresh_token is not None and issued.refresh_token in registry
            refreshed = await fob.refresh(issued.refresh_token)
            assert refreshed.access_token in registry and refreshed.refresh_token in registry
    finally:
        await fob.close()


async def test_a_token_logged_on_an_isolated_logger_is_flagged() -> None:
    """Message, ``extra`` and traceback are all checked; a hash of the token is fine (ASVS 16.2.5)."""
    fob = Keyfob(strategy="database", secret=HYGIENE_SECRET, store="memory://hygiene-canary")
    try:
        token = (await fob.create("u1", secure=False)).access_token
    finally:
        await fob.close()
    assert token is not None
    logger = logging.getLogger("keyfob-hygiene-canary")
    logger.propagate = False  # keep the planted leaks out of the suite-wide check
    collector = LogCollector()
    logger.addHandler(collector)
    try:
        logger.warning("user signed in with %s", token)
        logger.warning("user signed in", extra={"cookie": {"keyfob.session-token": token}})
        try:
            raise ValueError(f"bad session {token}")
        except ValueError:
            logger.exception("lookup failed")
        logger.warning("secret is %s", HYGIENE_SECRET)
        logger.info("session %s", hashlib.sha256(token.encode()).hexdigest())  # hashed: allowed
        logger.info("session %s", token[:8])  # a short prefix cannot be replayed
    finally:
        logger.removeHandler(collector)
    findings = collector.check(hygiene().registry)
    assert [f.kind for f in findings] == ["token", "token", "token", "secret"]
    assert all(token not in f.preview and HYGIENE_SECRET not in f.preview for f in findings)


def test_a_suite_that_logs_a_token_fails(tmp_path: Path) -> None:
    """End to end, in a sub-process: a pytest run whose code logs a session token exits 1."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_leaky.py").write_text(
        textwrap.dedent(
            f"""
            import logging, pathlib
            import anyio
            from keyfob import Keyfob

            def test_leaky():
                async def main():
                    fob = Keyfob(strategy="hybrid", secret={HYGIENE_SECRET!r}, store="memory://leaky")
                    issued = await fob.create("u1", secure=False)
                    pathlib.Path("token.txt").write_text(issued.refresh_token)
                    logging.getLogger("keyfob.app").debug("refresh token: %s", issued.refresh_token)
                    await fob.close()
                anyio.run(main)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.security._log_hygiene",
         "-c", "pytest.ini", "--rootdir", ".", "test_leaky.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed" in out and "log hygiene: secret or token in a log line" in out, out
    reported = r"token sha256:[0-9a-f]{12} from .* was logged by logger 'keyfob.app' \(DEBUG\)"
    assert re.search(reported, out), out
    assert (tmp_path / "token.txt").read_text() not in out  # the report never shows the value


# -- constant-time comparisons ----------------------------------------------------------------------------

_SECRET_NAME = re.compile(
    r"token|mac|signature|(^|_)sig($|_)|digest|csrf|secret|password|nonce|(^|_)tag($|_)", re.I
)
# A comparison with one of these is not a secret comparison:
_PUBLIC_NAME = re.compile(r"hash|_index$|^keys$|_count$|^kind$|_name$", re.I)


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    if isinstance(node, ast.Call):
        return _name(node.func)
    return None


def _is_sql_column(node: ast.expr) -> bool:
    """``table.c.token_hash == ...``: SQLAlchemy builds a WHERE on the SHA-256; nothing compares here."""
    return (
        isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "c"
    )


def _secret_comparisons(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
            continue
        sides = [node.left, *node.comparators]
        if any(isinstance(s, ast.Constant) for s in sides) or any(_is_sql_column(s) for s in sides):
            continue  # token == "-" (stdin) or a literal: nothing secret is compared
        names = [n for n in map(_name, sides) if n]
        if any(_PUBLIC_NAME.search(n) for n in names):
            continue
        if any(_SECRET_NAME.search(n) for n in names):
            out.append((node.lineno, ast.unparse(node)))
    return out


def test_secret_comparisons_use_compare_digest() -> None:
    """No ``==``/``!=``/``in`` on tokens, MACs, signatures or CSRF tokens anywhere in src/keyfob.

    Looking a session up by the SHA-256 of its token (store keys, SQL WHERE) is not such a
    comparison: the attacker controls the token, not its hash (Lucia's and ASVS 7.2.3's design).
    """
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if "_bench" in path.parts:  # the benchmark's comparison peers are not keyfob's code path
            continue
        for line, code in _secret_comparisons(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {code}")
    assert not offenders, "compare secrets with hmac.compare_digest:\n" + "\n".join(offenders)


@pytest.mark.parametrize("module", ["tokens/_authjs.py", "tokens/_jws.py", "web/csrf.py"])
def test_mac_checks_call_hmac_compare_digest(module: str) -> None:
    """The modules that check a MAC or a CSRF token do it with ``hmac.compare_digest``."""
    tree = ast.parse((SRC / module).read_text())
    uses = [
        n for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr == "compare_digest"
        and isinstance(n.value, ast.Name) and n.value.id == "hmac"
    ]
    assert uses, f"{module} does not use hmac.compare_digest"


def test_the_constant_time_check_catches_a_plain_comparison() -> None:
    bad = ast.parse("def check(tag, expected_tag, token, csrf):\n"
                    "    if tag == expected_tag: pass\n"
                    "    if csrf != token: pass\n"
                    "    if signature in known_signatures: pass\n")
    assert [line for line, _ in _secret_comparisons(bad)] == [2, 3, 4]
    fine = ast.parse("if token is None or token == '-' or t.c.token_hash == h or key_index == 0: pass\n")
    assert _secret_comparisons(fine) == []


# -- demo passwords: argon2id -------------------------------------------------------------------------------


async def test_demo_passwords_are_stored_as_argon2id_with_owasp_parameters(tmp_path: Path) -> None:
    users = Users(tmp_path / "users.db")  # the demo's default hasher
    assert users.hasher.type is Type.ID
    user = await users.add("ada@example.com", HYGIENE_PASSWORD)
    with sqlite3.connect(tmp_path / "users.db") as db:
        [(stored,)] = db.execute("SELECT password_hash FROM users").fetchall()
    assert stored.startswith("$argon2id$v=19$")
    params = extract_parameters(stored)
    # OWASP Password Storage Cheat Sheet: argon2id with at least m=19 MiB, t=2, p=1.
    assert params.type is Type.ID and params.memory_cost >= 19 * 1024 and params.time_cost >= 2
    assert HYGIENE_PASSWORD.encode() not in (tmp_path / "users.db").read_bytes()
    assert (await users.authenticate("ada@example.com", HYGIENE_PASSWORD)) == user
    assert await users.authenticate("ada@example.com", HYGIENE_PASSWORD + "x") is None
    assert await users.authenticate("nobody@example.com", HYGIENE_PASSWORD) is None


async def test_demo_app_uses_argon2id_by_default(tmp_path: Path) -> None:
    app = create_app("database", None, tmp_path, HYGIENE_SECRET)
    assert app.state.users.hasher.type is Type.ID


# -- demo pages: security headers on every response ------------------------------------------------------


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app("database", None, tmp_path, HYGIENE_SECRET, password_hasher=FAST_HASHER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield app, client


def _assert_security_headers(response: httpx.Response) -> None:
    what = f"{response.request.method} {response.request.url.path} → {response.status_code}"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, what
    csp = response.headers["content-security-policy"]
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):  # ASVS 3.4.3, 3.4.6
        assert directive in csp, what


async def test_every_demo_response_sends_security_headers(demo: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = demo
    seen = []

    async def get(path: str) -> httpx.Response:
        response = await client.get(path)
        _assert_security_headers(response)
        seen.append(response.status_code)
        return response

    for path in ("/", "/signin", "/signup", "/dashboard", "/devices", "/password", "/nope",
                 "/static/style.css", "/auth/session", "/auth/csrf", "/auth/sessions"):
        await get(path)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await get("/signup")).text)
    assert csrf is not None
    response = await client.post(
        "/signup",
        data={"email": "ada@example.com", "password": HYGIENE_PASSWORD, "csrf_token": csrf.group(1)},
    )
    _assert_security_headers(response)
    assert response.status_code == 303
    for path in ("/dashboard", "/devices", "/password", "/auth/session", "/auth/sessions"):
        response = await get(path)
        assert response.status_code == 200
    forged = await client.post("/signout", data={"csrf_token": "forged"})
    _assert_security_headers(forged)
    assert forged.status_code == 403
    assert {303, 401, 404, 200} <= set(seen)


async def test_demo_pages_with_session_data_are_not_cached(demo: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = demo
    for path in ("/signin", "/signup"):
        assert "no-store" in (await client.get(path)).headers["cache-control"]
