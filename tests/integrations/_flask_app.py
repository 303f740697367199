"""A Flask app for the gunicorn --preload test: built at import (in the master), served by forked workers."""

from __future__ import annotations

import os

from flask import Flask, request

from keyfob import Keyfob
from keyfob.flask import KeyfobFlask, current_session, login_required, sign_in, sign_out

app = Flask(__name__)
kf = KeyfobFlask(app, Keyfob(strategy=os.environ.get("KF_TEST_STRATEGY", "database"),
                             secret=os.environ["KF_TEST_SECRET"], store=os.environ["KF_TEST_STORE"]))


@app.post("/login")
def login() -> dict[str, object]:
    sign_in(request.get_json()["user"])
    return {"pid": os.getpid()}


@app.get("/me")
@login_required
def me() -> dict[str, object]:
    session = current_session()
    assert session is not None
    return {"user": session.user_id, "pid": os.getpid()}


@app.post("/logout")
def logout() -> dict[str, object]:
    sign_out()
    return {"pid": os.getpid()}
