"""The ``keyfob`` command line, driven through Click's CliRunner (no subprocess except one smoke test)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from keyfob import FakeClock, Keyfob, RequestMeta
from keyfob.cli import cli
from keyfob.tokens import JWECodec
from tests.conftest import closed_port, require_redis

SECRET = "kf-cli-secret-0123456789abcdef0123456789abcdef0123456789abcd"
OLD_SECRET = "kf-cli-old-secret-fedcba9876543210fedcba9876543210fedcba98"
OTHER_SECRET = "kf-cli-other-secret-00112233445566778899aabbccddeeff00112233"
COOKIE = "keyfob.session-token"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def invoke(args: list[str], env: Mapping[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=dict(env or {}), input=stdin, catch_exceptions=False)


def with_secret(*secrets: str) -> dict[str, str]:
    return {"KEYFOB_SECRET": ",".join(secrets or (SECRET,))}


def make_token(
    strategy: str,
    *,
    secret: str | list[str] = SECRET,
    store: str = "memory://",
    clock: FakeClock | None = None,
) -> tuple[str, str | None, str]:
    """(session/access token, refresh token, session id) from a real Keyfob, for http://localhost."""

    async def go() -> tuple[str, str | None, str]:
        fob = Keyfob(strategy=strategy, secret=secret, store=store, clock=clock)
        try:
            issued = await fob.create(
                "user-1", {"role": "admin"}, RequestMeta("203.0.113.9", UA), secure=False
            )
        finally:
            await fob.close()
        assert issued.access_token is not None
        return issued.access_token, issued.refresh_token, issued.session.id

    return asyncio.run(go())


def tamper(token: str) -> str:
    """Flip one character of the ciphertext (4th segment of a JWE)."""
    parts = token.split(".")
    ct = parts[3]
    i = len(ct) // 2
    parts[3] = ct[:i] + ("A" if ct[i] != "A" else "B") + ct[i + 1 :]
    return ".".join(parts)


# -- secret -------------------------------------------------------------------------------------------


def test_secret_is_32_random_bytes_base64url() -> None:
    outs = {invoke(["secret"]).stdout.strip() for _ in range(5)}
    assert len(outs) == 5  # fresh every time
    for out in outs:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", out)
        assert len(base64.urlsafe_b64decode(out + "=")) == 32


def test_secret_env_prints_an_assignment_keyfob_accepts() -> None:
    out = invoke(["secret", "--env"]).stdout.strip()
    name, _, value = out.partition("=")
    assert name == "KEYFOB_SECRET"
    Keyfob(secret=value, store="memory://")  # strong enough for Settings' entropy check


# -- inspect ------------------------------------------------------------------------------------------


def test_inspect_valid_jwt_cookie_exits_0_and_explains_it() -> None:
    token, _, sid = make_token("jwt")
    result = invoke(["inspect", token], with_secret())
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "✓ valid" in out
    assert "secret #1 of 1 (newest)" in out
    for label in ("issued", "rolls at", "expires", "cookie name"):
        assert label in out
    assert sid in out and "user-1" in out
    assert SECRET not in result.output


def test_inspect_names_the_older_secret_that_decrypted_it() -> None:
    token, _, _ = make_token("jwt", secret=OLD_SECRET)
    result = invoke(["inspect", "--json", token], with_secret(SECRET, OLD_SECRET))
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["key"] == {"index": 1, "newest": False, "of": 2}


def test_inspect_json_shape() -> None:
    token, _, sid = make_token("jwt")
    result = invoke(["inspect", "--json", token], with_secret())
    data = json.loads(result.stdout)
    assert {"valid", "payload", "reason", "kind", "key", "times", "cookie_name"} <= data.keys()
    assert data["valid"] is True and data["reason"] is None and data["kind"] == "jwe"
    assert data["payload"]["sub"] == "user-1" and data["payload"]["sid"] == sid
    assert {"issued", "expires", "rolls_at"} <= data["times"].keys()
    assert data["cookie_name"] == COOKIE


def test_inspect_tampered_cookie_exits_1_with_reason() -> None:
    token, _, _ = make_token("jwt")
    result = invoke(["inspect", "--json", tamper(token)], with_secret())
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["payload"] is None
    assert "tampered" in data["reason"]


def test_inspect_expired_cookie_says_when() -> None:
    issued_at = time.time() - 7200
    token = JWECodec(SECRET, COOKIE).encode({"sub": "user-1", "sid": "s1"}, max_age=60, now=issued_at)
    result = invoke(["inspect", "--json", token], with_secret())
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert data["reason"].startswith("expired at ") and "ago" in data["reason"]
    assert data["payload"]["sub"] == "user-1"  # authentic, only too old: shown to explain
    human = invoke(["inspect", token], with_secret())
    assert human.exit_code == 1 and "✗ invalid" in human.stdout and "expired at" in human.stdout


def test_inspect_wrong_secret() -> None:
    token, _, _ = make_token("jwt", secret=OTHER_SECRET)
    result = invoke(["inspect", "--json", token], with_secret())
    assert result.exit_code == 1
    assert "matches none of your 1 secret" in json.loads(result.stdout)["reason"]


def test_inspect_detects_the_secure_cookie_name() -> None:
    token = JWECodec(SECRET, "__Host-keyfob.session-token").encode({"sub": "u"}, max_age=600)
    auto = json.loads(invoke(["inspect", "--json", token], with_secret()).stdout)
    assert auto["valid"] is True and auto["cookie_name"] == "__Host-keyfob.session-token"
    strict = invoke(["inspect", "--json", "--cookie-name", COOKIE, token], with_secret())
    assert strict.exit_code == 1
    data = json.loads(strict.stdout)
    assert "__Host-keyfob.session-token" in data["reason"] and "--cookie-name" in data["hint"]


def test_inspect_accepts_name_equals_value_and_stdin() -> None:
    token, _, _ = make_token("jwt")
    assert invoke(["inspect", f"{COOKIE}={token}"], with_secret()).exit_code == 0
    assert invoke(["inspect", "-"], with_secret(), stdin=token + "\n").exit_code == 0


def test_inspect_authjs_cookie() -> None:
    token = JWECodec(SECRET, "authjs.session-token").encode({"sub": "42", "name": "Ada"}, max_age=600)
    data = json.loads(invoke(["inspect", "--json", token], with_secret()).stdout)
    assert data["valid"] is True and data["cookie_name"] == "authjs.session-token"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("abc.def", "2 dot-separated segments"),
        ("not a token", "not a keyfob token"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "unsigned token"),
        ("bm90IGpzb24.." + "A" * 22 + ".AAAA.AAAA", "not base64url-encoded JSON"),
    ],
)
def test_inspect_explains_malformed_tokens(token: str, expected: str) -> None:
    result = invoke(["inspect", "--json", token], with_secret())
    assert result.exit_code == 1
    assert expected in json.loads(result.stdout)["reason"]


def test_inspect_hybrid_access_token() -> None:
    token, _, sid = make_token("hybrid")
    result = invoke(["inspect", "--json", token], with_secret())
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "jws" and data["payload"]["sid"] == sid
    assert "refreshes_at" in data["times"]
    forged = invoke(
        ["inspect", "--json", token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")], with_secret()
    )
    assert forged.exit_code == 1


def test_inspect_opaque_token_is_looked_up_in_the_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    token, _, sid = make_token("database", store=store)
    without = invoke(["inspect", "--json", token], with_secret())
    assert without.exit_code == 1 and "--store" in json.loads(without.stdout)["hint"]
    found = invoke(["inspect", "--json", "--store", store, token], with_secret())
    assert found.exit_code == 0
    assert json.loads(found.stdout)["payload"]["id"] == sid
    unknown = invoke(["inspect", "--json", "--store", store, "A" * 43], with_secret())
    assert unknown.exit_code == 1


def test_inspect_without_a_secret_is_one_clear_line() -> None:
    token, _, _ = make_token("jwt")
    result = invoke(["inspect", token])
    assert result.exit_code == 2
    assert "no secret" in result.stderr and "KEYFOB_SECRET" in result.stderr
    assert "Traceback" not in result.output


# -- migrate, sessions, cleanup -----------------------------------------------------------------------


def test_migrate_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    first = invoke(["migrate", "--store", store])
    assert first.exit_code == 0 and "created keyfob's tables" in first.stdout
    assert (tmp_path / "keyfob.db").exists()
    again = invoke(["migrate", "--store", store])
    assert again.exit_code == 0 and "already up to date" in again.stdout


def test_migrate_reads_keyfob_store(tmp_path: Path) -> None:
    result = invoke(["migrate"], {"KEYFOB_STORE": f"sqlite:///{tmp_path}/env.db"})
    assert result.exit_code == 0 and (tmp_path / "env.db").exists()


def test_sessions_list_and_revoke(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    _, _, first = make_token("database", store=store)
    _, _, second = make_token("database", store=store)
    env = {**with_secret(), "KEYFOB_STRATEGY": "database", "KEYFOB_STORE": store}

    listed = json.loads(invoke(["sessions", "list", "--user", "user-1", "--json"], env).stdout)
    assert {s["id"] for s in listed} == {first, second}
    assert all(s["ip"] == "203.0.113.9" and s["device"].startswith("Firefox") for s in listed)

    table = invoke(["sessions", "list", "--user", "user-1"], env)
    assert table.exit_code == 0 and first in table.stdout and "Firefox" in table.stdout

    revoked = invoke(["sessions", "revoke", first], env)
    assert revoked.exit_code == 0 and f"revoked session {first}" in revoked.stdout
    listed = json.loads(invoke(["sessions", "list", "--user", "user-1", "--json"], env).stdout)
    assert [s["id"] for s in listed] == [second]

    missing = invoke(["sessions", "revoke", first], env)
    assert missing.exit_code == 1 and "no live session" in missing.stderr

    everyone = invoke(["sessions", "revoke-user", "user-1"], env)
    assert everyone.exit_code == 0 and "revoked 1 session" in everyone.stdout
    assert json.loads(invoke(["sessions", "list", "--user", "user-1", "--json"], env).stdout) == []


def test_sessions_list_without_user_counts_rows(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    make_token("database", store=store)
    result = invoke(["sessions", "list", "--store", store, "--strategy", "database"], with_secret())
    assert result.exit_code == 0 and "holds 1 session row" in result.stdout and "--user" in result.stdout


def test_sessions_without_a_secret_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(["sessions", "list", "--user", "u", "--store", f"sqlite:///{tmp_path}/k.db"])
    assert result.exit_code == 2
    assert "no secret is configured" in result.stderr and "keyfob secret" in result.stderr
    assert "Traceback" not in result.output


def test_cleanup_deletes_expired_sessions_in_batches(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    long_ago = FakeClock(time.time() - 40 * 86400)  # older than the 30-day max_age
    for _ in range(5):
        make_token("database", store=store, clock=long_ago)
    make_token("database", store=store)
    result = invoke(["cleanup", "--store", store, "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert "deleted 5 expired session row(s)" in result.stdout and "1 remain" in result.stdout
    again = invoke(["cleanup", "--store", store])
    assert "deleted 0 expired" in again.stdout


# -- jwks, demo, bench, help --------------------------------------------------------------------------


def test_jwks_is_empty_for_hs256_and_says_why() -> None:
    result = invoke(["jwks"], with_secret())
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"keys": []}
    assert "HS256" in result.stderr


def test_jwks_eddsa_prints_public_keys_only() -> None:
    result = invoke(["jwks", "--eddsa"], with_secret(SECRET, OLD_SECRET))
    assert result.exit_code == 0
    keys: list[dict[str, Any]] = json.loads(result.stdout)["keys"]
    assert len(keys) == 2
    for key in keys:
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key


def test_demo_without_its_dependencies_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def fake(name: str, package: str | None = None) -> Any:
        return None if name == "uvicorn" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    result = invoke(["demo"])
    assert result.exit_code == 2
    assert "uvicorn" in result.stderr and "pip install 'keyfob[demo]'" in result.stderr


def test_bench_passes_its_arguments_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("keyfob._bench")

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyfob._bench", fake)
    result = invoke(["bench", "--quick", "--rounds", "2"])
    assert seen == [["--quick", "--rounds", "2"]] and result.exit_code == 3


def test_bench_missing_is_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyfob._bench", None)
    result = invoke(["bench"])
    assert result.exit_code == 2 and "keyfob._bench" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["secret"],
        ["inspect"],
        ["migrate"],
        ["sessions"],
        ["sessions", "list"],
        ["sessions", "revoke"],
        ["sessions", "revoke-user"],
        ["cleanup"],
        ["jwks"],
        ["demo"],
        ["doctor"],
    ],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = invoke([*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_python_dash_m_keyfob_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keyfob", "secret"], capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", out.stdout)


def make_v4_token(claims: dict[str, Any], secret: str) -> str:
    """A next-auth v4 cookie (dir + A256GCM, key from derive_v4_key), built by hand."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from keyfob.tokens import derive_v4_key

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(b'{"alg":"dir","enc":"A256GCM"}')
    iv = os.urandom(12)
    sealed = AESGCM(derive_v4_key(secret)).encrypt(iv, json.dumps(claims).encode(), header.encode())
    return f"{header}..{b64(iv)}.{b64(sealed[:-16])}.{b64(sealed[-16:])}"


def test_inspect_next_auth_v4_cookie_is_detected() -> None:
    now = int(time.time())
    token = make_v4_token({"sub": "42", "iat": now, "exp": now + 600}, SECRET)
    data = json.loads(invoke(["inspect", "--json", token], with_secret()).stdout)
    assert data["valid"] is True and data["kind"] == "jwe-v4" and data["payload"]["sub"] == "42"
    wrong = invoke(["inspect", "--json", "--v4", token], with_secret(OTHER_SECRET))
    assert wrong.exit_code == 1 and "next-auth v4" in json.loads(wrong.stdout)["reason"]


# -- ids that look like options, data dirs, stores that are not there ---------------------------------


def add_session_with_id(store_url: str, session_id: str, user_id: str = "user-1") -> None:
    """Put a live session row with a chosen public id straight into the store."""
    from keyfob.stores import SessionRecord, open_store

    async def go() -> None:
        store = open_store(store_url)
        await store.migrate()
        now = time.time()
        try:
            await store.add(
                SessionRecord(
                    token_hash=hashlib.sha256(session_id.encode()).digest(),
                    id=session_id,
                    user_id=user_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + 3600,
                )
            )
        finally:
            await store.close()

    asyncio.run(go())


@pytest.mark.parametrize("session_id", ["-IC-nwAbCdEfGhIjKlMnOp", "--store-like-id", "-h0QvY7yQ2V4bX1Qm9Z3"])
def test_sessions_revoke_accepts_an_id_that_starts_with_a_dash(tmp_path: Path, session_id: str) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    add_session_with_id(store, session_id)
    env = {**with_secret(), "KEYFOB_STRATEGY": "database"}
    result = invoke(["sessions", "revoke", session_id, "--store", store], env)
    assert result.exit_code == 0, result.output
    assert f"revoked session {session_id} of user user-1" in result.stdout
    again = invoke(["sessions", "revoke", "--store", store, "--", session_id], env)
    assert again.exit_code == 1 and "no live session" in again.stderr


def test_sessions_revoke_user_and_inspect_accept_dash_arguments(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/keyfob.db"
    add_session_with_id(store, "s-1", user_id="-user")
    env = {**with_secret(), "KEYFOB_STRATEGY": "database", "KEYFOB_STORE": store}
    result = invoke(["sessions", "revoke-user", "-user"], env)
    assert result.exit_code == 0 and "revoked 1 session(s) of user -user" in result.stdout
    opaque = invoke(["inspect", "--json", "-" + "A" * 42], env)  # an opaque token starting with '-'
    assert opaque.exit_code == 1 and "no session in the store" in json.loads(opaque.stdout)["reason"]


@pytest.mark.parametrize(
    "args",
    [
        ["cleanup"],
        ["migrate"],
        ["sessions", "list"],
        ["sessions", "list", "--user", "u"],
        ["sessions", "revoke", "some-id"],
        ["sessions", "revoke-user", "u"],
    ],
    ids=" ".join,
)
def test_nothing_configured_creates_no_store_file_and_says_what_to_do(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(args, with_secret())
    assert result.exit_code == 1
    assert "no store is configured" in result.stderr and "keyfob.db" in result.stderr
    assert "--store" in result.stderr and "keyfob migrate --store" in result.stderr
    assert list(tmp_path.iterdir()) == [], "a read-only command created a file"


@pytest.mark.parametrize(
    "args",
    [["cleanup"], ["sessions", "list", "--user", "u"], ["sessions", "revoke", "x"], ["inspect", "A" * 43]],
    ids=" ".join,
)
def test_a_named_sqlite_store_that_is_missing_is_not_created(args: list[str], tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    result = invoke([*args, "--store", f"sqlite:///{path}"], with_secret())
    assert result.exit_code == 1
    assert f"there is no SQLite store at {path}" in result.stderr and "keyfob migrate" in result.stderr
    assert not path.exists()


def test_migrate_creates_a_store_that_was_named_and_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke(["migrate"]).exit_code == 1 and not (tmp_path / "keyfob.db").exists()
    named = invoke(["migrate", "--store", "sqlite:///keyfob.db"])
    assert named.exit_code == 0 and "created keyfob's tables" in named.stdout
    assert (tmp_path / "keyfob.db").exists()
    again = invoke(["migrate"])  # the default file now exists: upgrading it is fine
    assert again.exit_code == 0 and "already up to date" in again.stdout


def make_demo_data_dir(data_dir: Path, *, strategy: str = "database") -> tuple[str, str]:
    """A data dir laid out as `keyfob demo --data-dir` leaves it: secret file, store, config."""
    from keyfob.cli._target import write_demo_config

    data_dir.mkdir()
    (data_dir / "keyfob-secret").write_text(OTHER_SECRET + "\n")
    write_demo_config(data_dir, strategy=strategy, store=None)
    _, _, sid = make_token(strategy, secret=OTHER_SECRET, store=f"sqlite:///{data_dir / 'keyfob.db'}")
    return OTHER_SECRET, sid


@pytest.mark.parametrize("how", ["--data-dir", "KEYFOB_DATA_DIR"])
def test_data_dir_reaches_the_demos_store_secret_and_strategy(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "demo-data"
    _, sid = make_demo_data_dir(data_dir, strategy="database")
    flag = ["--data-dir", str(data_dir)] if how == "--data-dir" else []
    env = {"KEYFOB_DATA_DIR": str(data_dir)} if how == "KEYFOB_DATA_DIR" else {}
    listed = invoke(["sessions", "list", "--user", "user-1", "--json", *flag], env)  # no KEYFOB_SECRET
    assert listed.exit_code == 0, listed.output
    assert [s["id"] for s in json.loads(listed.stdout)] == [sid]
    revoked = invoke(["sessions", "revoke", sid, *flag], env)
    assert revoked.exit_code == 0 and f"revoked session {sid}" in revoked.stdout
    assert invoke(["cleanup", *flag], env).exit_code == 0


def test_data_dir_that_does_not_exist_is_named(tmp_path: Path) -> None:
    result = invoke(["sessions", "list", "--data-dir", str(tmp_path / "nope")], with_secret())
    assert result.exit_code == 1 and "nope does not exist" in result.stderr and "keyfob demo" in result.stderr


def test_the_cli_knows_the_demos_file_layout() -> None:
    from keyfob.cli import _target
    from keyfob.demo import _app

    assert _target.DEMO_SECRET_FILE == _app.SECRET_FILE
    assert _target.DEMO_SESSIONS_FILE == _app.SESSIONS_FILE


def test_demo_records_its_strategy_and_store_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    data_dir = tmp_path / "d"
    port = str(free_port())
    result = invoke(["demo", "--strategy", "jwt", "--port", port, "--data-dir", str(data_dir)], with_secret())
    assert result.exit_code == 0, result.output
    assert served and json.loads((data_dir / "keyfob-demo.json").read_text()) == {
        "strategy": "jwt",
        "store": None,
    }


def test_a_sqlite_failure_is_said_once_and_talks_about_the_file(tmp_path: Path) -> None:
    result = invoke(["migrate", "--store", f"sqlite:///{tmp_path}/no-such-folder/keyfob.db"])
    assert result.exit_code == 1
    assert result.stderr.count("unable to open database file") == 1, result.stderr
    assert "no-such-folder exists" in result.stderr and "server" not in result.stderr


def test_a_server_store_failure_asks_whether_the_server_runs() -> None:
    with closed_port() as port:
        result = invoke(
            ["sessions", "list", "--strategy", "database", "--store", f"postgresql://postgres@127.0.0.1:{port}/x"],
            with_secret(),
        )
    assert result.exit_code == 1
    assert f"is PostgreSQL running at 127.0.0.1:{port}?" in result.stderr
    assert result.stderr.count("Connect call failed") <= 1


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LISTINGS = itertools.count()


@pytest.fixture(params=[
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", marks=pytest.mark.redis_cluster),
])  # fmt: skip
def listing_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL of every kind that offers ``sessions_page``; Redis keys private to this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/keyfob.db"
        return
    from tests.contract.conftest import REDIS_TEST_URL, delete_redis_keys

    if request.param == "redis":
        require_redis()
        base = REDIS_TEST_URL
    else:
        base = request.getfixturevalue("redis_cluster").url
    prefix = f"kfcli{os.getpid()}:{next(_LISTINGS)}:"
    asyncio.run(delete_redis_keys(prefix, base))
    try:
        yield f"{base}?prefix={prefix}"
    finally:
        asyncio.run(delete_redis_keys(prefix, base))


def test_sessions_list_all_pages_through_every_users_live_sessions(listing_store: str) -> None:
    store = listing_store
    long_ago = FakeClock(time.time() - 40 * 86400)  # expired: not listed
    make_token("database", store=store, clock=long_ago)
    live = {make_token("database", store=store)[2] for _ in range(4)}
    add_session_with_id(store, "-dash-id-of-another-user", user_id="user-2")
    live.add("-dash-id-of-another-user")
    env = {**with_secret(), "KEYFOB_STRATEGY": "database", "KEYFOB_STORE": store}
    for size in ("1", "2", "500"):
        listed = invoke(["sessions", "list", "--all", "--page-size", size, "--json"], env)
        assert listed.exit_code == 0, listed.output
        rows = json.loads(listed.stdout)
        assert sorted(r["id"] for r in rows) == sorted(live), "each live session once"
        assert {r["user_id"] for r in rows} == {"user-1", "user-2"}
    table = invoke(["sessions", "list", "--all"], env)
    assert table.exit_code == 0 and "5 active session(s)" in table.stdout and "user-2" in table.stdout
    both = invoke(["sessions", "list", "--all", "--user", "u"], env)
    assert both.exit_code == 2 and "--all and --user" in both.stderr
