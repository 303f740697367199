"""Flask: the same engine from sync views, through one long-lived event loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, redirect
from werkzeug.wrappers import Response

from keyfob import Keyfob
from keyfob.flask import KeyfobFlask, current_session, login_required, sign_in, sign_out

SECRET = "kf-flask-secret-0123456789abcdef0123456789abcdef0123456789a"


@pytest.fixture(params=["jwt", "database", "hybrid"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    app = Flask(__name__)
    fob = Keyfob(strategy=request.param, secret=SECRET, store=f"sqlite:///{tmp_path / 'kf.db'}")
    kf = KeyfobFlask(app, fob)

    @app.post("/login")
    def login() -> Response:
        sign_in("u1", {"role": "admin"})
        return redirect("/me")

    @app.get("/me")
    @login_required
    def me() -> dict[str, str]:
        s = current_session()
        assert s is not None
        return {"user": s.user_id}

    @app.post("/logout")
    def logout() -> dict[str, bool]:
        sign_out()
        return {"ok": True}

    yield app
    kf.close()


def test_flask_sign_in_protected_view_and_sign_out(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/me").status_code == 401
    r = client.post("/login")
    assert r.status_code == 302 and r.headers.getlist("Set-Cookie")
    assert client.get("/me").get_json() == {"user": "u1"}
    assert client.post("/logout").status_code == 200
    assert client.get("/me").status_code == 401


def test_flask_garbled_cookie_is_401_not_500(app: Flask) -> None:
    client = app.test_client()
    client.set_cookie("keyfob.session-token", "garbage.garbage")
    r = client.get("/me")
    assert r.status_code == 401 and r.get_json()["error"] in {"invalid_token", "session_error"}
