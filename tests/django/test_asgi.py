"""keyfob.django.asgi: under an ASGI server, the engine runs on the server's loop (a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django.settings"
import django
django.setup()
if sys.argv[1:] == ["middleware"]:  # KeyfobMiddleware (database strategy) instead of Django's sessions
    from django.test.utils import override_settings
    override_settings(MIDDLEWARE=["keyfob.django.middleware.KeyfobMiddleware"],
                      ROOT_URLCONF="tests.django.test_middleware").enable()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
User.objects.create_user("ada", password="pw-ada-1")
from keyfob.django._loop import home
from keyfob.django.asgi import get_asgi_application

app = get_asgi_application()


async def call(method, path, body=b"", cookie=""):
    headers = [(b"host", b"testserver"), (b"content-type", b"application/x-www-form-urlencoded")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "client": ("203.0.113.9", 5000), "server": ("testserver", 80)}
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    out = []

    async def receive():
        if inbox:
            return inbox.pop(0)
        await asyncio.Event().wait()  # the client stays connected until the response is sent

    async def send(message):
        out.append(message)

    await app(scope, receive, send)
    start = out[0]
    cookies = [v.decode() for k, v in start["headers"] if k.lower() == b"set-cookie"]
    return start["status"], b"".join(m.get("body", b"") for m in out[1:]), cookies


async def main():
    lifespan, sent, ready = asyncio.Queue(), [], asyncio.Event()

    async def send(message):
        sent.append(message["type"])
        ready.set()

    await lifespan.put({"type": "lifespan.startup"})
    serving = asyncio.create_task(app({"type": "lifespan"}, lifespan.get, send))
    await ready.wait()
    status, body, cookies = await call("POST", "/asignin", b"username=ada&password=pw-ada-1")
    cookie = "; ".join(c.split(";")[0] for c in cookies)
    if sys.argv[1:] == ["middleware"]:
        status2, body2, _ = await call("GET", "/adashboard", cookie=cookie)  # async view, async path
        status3, body3, _ = await call("GET", "/whoami", cookie=cookie)  # a sync view, in a worker thread
    else:
        status2, body2, _ = await call("GET", "/awhoami", cookie=cookie)
        status3, body3, _ = await call("GET", "/whoami", cookie=cookie)  # a sync view, in a worker thread
    adopted = home.adopted is asyncio.get_running_loop()
    await lifespan.put({"type": "lifespan.shutdown"})
    await serving
    print(json.dumps({"adopted": adopted, "signin": status, "awhoami": json.loads(body2),
                      "whoami": json.loads(body3), "lifespan": sent}))


asyncio.run(main())
"""


def run_script(tmp_path: Path, *args: str) -> dict[str, object]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KEYFOB_")},
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_keyfob_middleware_under_asgi_awaits_the_store_on_the_servers_loop(tmp_path: Path) -> None:
    out = run_script(tmp_path, "middleware")
    assert out == {"adopted": True, "signin": 200, "awhoami": {"user": "ada"},
                   "whoami": {"user": "ada", "session": True},
                   "lifespan": ["lifespan.startup.complete", "lifespan.shutdown.complete"]}


def test_the_asgi_application_runs_keyfob_on_the_servers_loop(tmp_path: Path) -> None:
    out = run_script(tmp_path)

    assert out == {"adopted": True, "signin": 200, "awhoami": {"user": "ada", "seen": 1},
                   "whoami": {"user": "ada", "seen": 2},
                   "lifespan": ["lifespan.startup.complete", "lifespan.shutdown.complete"]}
