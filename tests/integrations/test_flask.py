"""Flask: the extension's own conventions (the shared HTTP behaviour is in tests/http_contract/)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from keyfob import FakeClock, Keyfob
from keyfob.errors import ConfigError
from keyfob.flask import (
    KeyfobFlask,
    bump_user_version,
    csrf_token,
    fresh_required,
    list_sessions,
    login_required,
    revoke,
    revoke_others,
    sign_in,
)
from tests.conftest import require_service

SECRET = "kf-flask-secret-4Wq8Zr2Lm6Xt1Yp9Bn3Vc7Hd5Jk0Gs8Fa2Ue6Ri4To1"


@pytest.fixture(params=["jwt", "database", "hybrid"])
def made(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Flask, Keyfob]]:
    app = Flask(__name__)
    fob = Keyfob(strategy=request.param, secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}", clock=clock)
    kf = KeyfobFlask(app, fob, login_view="login_page")

    @app.get("/login")
    def login_page() -> str:
        return f'<form method="post"><input name="csrf_token" value="{csrf_token()}"></form>'

    @app.post("/login")
    def login() -> dict[str, str]:
        return {"id": sign_in("u1", {"role": "user"}).session.id}

    @app.get("/page")
    @login_required
    def page() -> str:
        return "secret page"

    @app.post("/sensitive")
    @fresh_required(max_age=300)
    def sensitive() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/devices")
    @login_required
    def devices() -> dict[str, int]:
        return {"n": len(list_sessions())}

    @app.post("/others")
    @login_required
    def others() -> dict[str, int]:
        return {"revoked": revoke_others()}

    @app.post("/admin/revoke/<sid>")
    def admin_revoke(sid: str) -> dict[str, bool]:
        return {"done": revoke(sid)}

    @app.post("/admin/bump/<user>")
    def admin_bump(user: str) -> dict[str, int]:
        return {"version": bump_user_version(user)}

    yield app, fob
    kf.close()


def token(client: object) -> dict[str, str]:
    r = client.get("/auth/csrf")  # type: ignore[attr-defined]
    return {"X-CSRF-Token": r.get_json()["csrfToken"], "Origin": "http://localhost"}


def test_login_required_redirects_html_to_the_login_view_and_api_gets_401(made: tuple[Flask, Keyfob]) -> None:
    client = made[0].test_client()
    html = client.get("/page", headers={"Accept": "text/html"})
    assert html.status_code == 302 and html.headers["Location"].startswith("/login?next=/page")
    api = client.get("/page", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.get_json()["error"] == "session_error"


def test_the_login_form_token_works_and_a_forged_form_does_not(made: tuple[Flask, Keyfob]) -> None:
    client = made[0].test_client()
    assert client.post("/login", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/login").status_code == 200
    assert client.get("/page").get_data() == b"secret page"


def test_fresh_required_refuses_an_old_sign_in(made: tuple[Flask, Keyfob], clock: FakeClock) -> None:
    client = made[0].test_client()
    client.post("/login")
    assert client.post("/sensitive", headers=token(client)).status_code == 200
    clock.advance(301)
    r = client.post("/sensitive", headers=token(client))
    assert r.status_code == 403 and r.get_json()["error"] == "reauthentication_required"


def test_sync_helpers_list_revoke_and_bump(made: tuple[Flask, Keyfob]) -> None:
    app, fob = made
    client = app.test_client()
    sid = client.post("/login").get_json()["id"]
    if fob.settings.strategy != "jwt":
        assert client.get("/devices").get_json() == {"n": 1}
    assert client.post("/others", headers=token(client)).status_code == 200
    assert client.get("/page").status_code == 200
    assert client.post("/admin/bump/u1", headers=token(client)).status_code == 200
    assert client.get("/page", headers={"Accept": "application/json"}).status_code == 401
    sid = client.post("/login", headers=token(client)).get_json()["id"]
    assert client.post(f"/admin/revoke/{sid}", headers=token(client)).status_code == 200
    assert client.get("/page", headers={"Accept": "application/json"}).status_code == 401


def test_keyfob_flask_without_an_engine_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="init_app"):
        KeyfobFlask(Flask(__name__))


def test_creating_the_extension_starts_nothing(tmp_path: Path) -> None:
    before = {t.name for t in __import__("threading").enumerate()}
    kf = KeyfobFlask(Flask(__name__), Keyfob(secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}"))
    assert kf.loop is not None and kf.loop._loop is None, "no loop before the first request (fork-safe)"
    assert {t.name for t in __import__("threading").enumerate()} == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gunicorn_preload_two_workers_answer_sign_in_page_and_sign_out(tmp_path: Path) -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    require_service("gunicorn", gunicorn.exists(), "pip install gunicorn")
    port = _free_port()
    env = {**os.environ, "KF_TEST_SECRET": SECRET, "KF_TEST_STORE": f"sqlite:///{tmp_path / 'kf.db'}",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen([str(gunicorn), "--preload", "-w", "2", "-b", f"127.0.0.1:{port}",
                             "--graceful-timeout", "2", "tests.integrations._flask_app:app"],
                            env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/me", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"gunicorn did not start: {(tmp_path / 'gunicorn.log').read_text()}")
                time.sleep(0.1)
        seen: dict[str, set[int]] = {"login": set(), "me": set(), "logout": set()}
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=base, timeout=10) as c:
                r = c.post("/login", json={"user": "u1"})
                assert r.status_code == 200, r.text
                seen["login"].add(r.json()["pid"])
                cookies = dict(c.cookies.items())
            with httpx.Client(base_url=base, timeout=10, cookies=cookies) as c:
                r = c.get("/me")
                assert r.status_code == 200 and r.json()["user"] == "u1", r.text
                seen["me"].add(r.json()["pid"])
                csrf = c.get("/auth/csrf").json()["csrfToken"]
                r = c.post("/logout", headers={"X-CSRF-Token": csrf, "Origin": base})
                assert r.status_code == 200, r.text
                seen["logout"].add(r.json()["pid"])
                assert c.get("/me").status_code == 401
            if all(len(p) == 2 for p in seen.values()):
                break
        assert all(len(p) == 2 for p in seen.values()), f"both workers must answer each step: {seen}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()



def _idle_feed_app(strategy: str) -> Keyfob:
    import uuid

    from keyfob.stores.redis import RedisFeed
    from tests.conftest import REDIS_URL, require_redis

    require_redis()
    url = f"{REDIS_URL.rsplit('/', 1)[0]}/15?prefix=flask-gaps-{uuid.uuid4().hex[:8]}"
    return Keyfob(strategy=strategy, secret=SECRET, store=url, feed=RedisFeed(url, health_interval=0.05))


@pytest.mark.parametrize("strategy", ["jwt", "hybrid"])
def test_the_redis_feed_stays_up_across_a_flask_workers_idle_gaps(
        strategy: str, caplog: pytest.LogCaptureFixture) -> None:
    """Flask runs keyfob's loop only during requests: the time between them is the worker idling, not
    the line being silent. The feed's health check counted it as silence, so after every gap of more
    than three health intervals the feed was dropped, the view fell back to store reads and resynced."""
    from tests.http_contract.frameworks import flask_client

    fob = _idle_feed_app(strategy)
    with flask_client(fob) as client:
        token = client.request("GET", "/auth/csrf").body["csrfToken"]
        login = client.request("POST", "/login", json={"user": "u1"}, headers=[("x-csrf-token", token)])
        assert login.status == 200
        assert fob.view.live
        for _ in range(3):
            time.sleep(0.3)  # the worker idles for six health intervals; the line is fine
            assert client.request("GET", "/me").status == 200
            assert fob.view.live, "the feed was dropped after an idle gap"
    assert "revocation feed lost" not in caplog.text
