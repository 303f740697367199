"""The demo app over HTTP (httpx + ASGITransport), for every strategy, on a temporary data dir."""

from __future__ import annotations

import re
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from keyfob.demo import create_app

pytestmark = pytest.mark.anyio
STRATEGIES = ["jwt", "database", "hybrid"]
SECRET = "kf-demo-secret-0123456789abcdef0123456789abcdef0123456789abc"
PASSWORD = "correct horse battery"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests only: real apps keep defaults
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')

Browser = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FastAPI]:
    strategy: str = getattr(request, "param", "database")
    application = create_app(strategy, None, tmp_path, SECRET, password_hasher=FAST_HASHER)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def browser(app: FastAPI) -> Browser:
    """A factory of independent browsers (cookie jars) on the same app."""

    @asynccontextmanager
    async def open_browser() -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client

    return open_browser


async def csrf_token(client: httpx.AsyncClient, page: str = "/signin") -> str:
    response = await client.get(page)
    assert response.status_code == 200, response.text
    match = CSRF_FIELD.search(response.text)
    assert match is not None
    return match.group(1)


async def sign_up(client: httpx.AsyncClient, email: str = "ada@example.com") -> httpx.Response:
    token = await csrf_token(client, "/signup")
    return await client.post("/signup", data={"email": email, "password": PASSWORD, "csrf_token": token})


async def sign_in(
    client: httpx.AsyncClient, email: str = "ada@example.com", password: str = PASSWORD
) -> httpx.Response:
    token = await csrf_token(client, "/signin")
    return await client.post("/signin", data={"email": email, "password": password, "csrf_token": token})


async def sign_out(client: httpx.AsyncClient) -> httpx.Response:
    token = await csrf_token(client, "/dashboard")
    return await client.post("/signout", data={"csrf_token": token})


def device_rows(html: str) -> tuple[str | None, list[str]]:
    """(id of the row marked "this device", ids of the other rows) on the devices page."""
    current: str | None = None
    others: list[str] = []
    for row in html.split("<tr")[1:]:
        match = re.search(r'action="/devices/([A-Za-z0-9_-]+)/revoke"', row)
        if match is None:
            continue
        if 'class="current"' in row:
            current = match.group(1)
        else:
            others.append(match.group(1))
    return current, others


def text(response: httpx.Response) -> str:
    """The visible text of a page, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_sign_up_sign_in_dashboard_devices_sign_out(app: FastAPI, browser: Browser) -> None:
    strategy = app.state.keyfob.settings.strategy
    async with browser() as client:
        response = await sign_up(client)
        assert response.status_code == 303 and response.headers["location"].startswith("/dashboard")
        assert client.cookies.get("keyfob.session-token")  # http://localhost: unprefixed, non-Secure cookie
        assert "Secure" not in response.headers.get("set-cookie", "")
        await sign_out(client)

        response = await sign_in(client)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard"

        dashboard = await client.get("/dashboard")
        assert dashboard.status_code == 200
        page = text(dashboard)
        assert "Signed in as ada@example.com" in page and f"Strategy {strategy}" in page
        assert "Expires" in page or "Access token expires" in page
        assert ("Rolls" in page) if strategy == "jwt" else ("Refreshes" in page or "Extends" in page)

        devices = await client.get("/devices")
        assert devices.status_code == 200
        if strategy == "jwt":
            assert "stateless" in text(devices)
        else:
            assert "this device" in text(devices) and "127.0.0.1" in text(devices)
            assert "Sign out everywhere else" in text(devices)

        response = await sign_out(client)
        assert response.status_code == 303 and response.headers["location"].startswith("/signin")
        after = await client.get("/dashboard")
        assert after.status_code == 303 and after.headers["location"].startswith("/signin")


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_post_without_csrf_token_is_a_403_page_that_says_what_to_do(app: FastAPI, browser: Browser) -> None:
    async with browser() as client:
        await csrf_token(client, "/signup")  # the cookie half is there; the form field is not
        response = await client.post("/signup", data={"email": "eve@example.com", "password": PASSWORD})
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        page = text(response)
        assert "This form could not be accepted" in page and "no CSRF token was submitted" in page
        assert "What to do next: Nothing was changed. Reload the page" in page and "csrf_failed" in page
        assert 'href="/signup"' in response.text  # back to the form it came from
        forged = await client.post(
            "/signup", data={"email": "eve@example.com", "password": PASSWORD, "csrf_token": "forged"}
        )
        assert forged.status_code == 403 and "does not match" in text(forged)
        assert app.state.users.by_email("eve@example.com") is None


async def test_api_routes_keep_json_errors(browser: Browser) -> None:
    async with browser() as client:
        await sign_up(client)
        response = await client.post("/auth/signout")  # a cookie rides along, no token: refused
        assert response.status_code == 403 and response.json()["error"] == "csrf_failed"


async def test_cross_origin_post_is_403_even_with_the_token(browser: Browser) -> None:
    async with browser() as client:
        token = await csrf_token(client, "/signup")
        response = await client.post(
            "/signup",
            headers={"origin": "https://evil.example"},
            data={"email": "eve@example.com", "password": PASSWORD, "csrf_token": token},
        )
        assert response.status_code == 403
        assert "the Origin https://evil.example is not allowed" in text(response)


async def test_wrong_password_and_taken_email_say_what_to_do(browser: Browser) -> None:
    async with browser() as client:
        await sign_up(client)
        await sign_out(client)
        wrong = await sign_in(client, password="not the password")
        assert wrong.status_code == 401 and "Wrong email or password" in text(wrong)
        unknown = await sign_in(client, email="nobody@example.com")
        assert unknown.status_code == 401 and "Wrong email or password" in text(unknown)
        taken = await sign_up(client)
        assert (
            taken.status_code == 409
            and "That email is taken" in text(taken)
            and "sign in instead" in text(taken)
        )
        token = await csrf_token(client, "/signup")
        short = await client.post(
            "/signup", data={"email": "bo@example.com", "password": "short", "csrf_token": token}
        )
        assert short.status_code == 400 and "at least 8 characters" in text(short)


async def test_pages_send_security_headers(browser: Browser) -> None:
    async with browser() as client:
        for path in ("/signin", "/signup", "/static/style.css"):
            response = await client.get(path)
            assert "default-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "same-origin"
            assert response.headers["x-content-type-options"] == "nosniff"


async def test_user_input_is_escaped(browser: Browser) -> None:
    async with browser() as client:
        token = await csrf_token(client, "/signup")
        response = await client.post(
            "/signup", data={"email": '"><script>x</script>', "password": PASSWORD, "csrf_token": token}
        )
        assert response.status_code == 400
        assert "<script>x</script>" not in response.text and "&lt;script&gt;" in response.text


@pytest.mark.parametrize("app", ["database", "hybrid"], indirect=True)
async def test_revoking_another_device_signs_it_out(app: FastAPI, browser: Browser) -> None:
    async with browser() as laptop, browser() as phone:
        await sign_up(laptop)
        await sign_in(phone)
        assert (await phone.get("/dashboard")).status_code == 200
        devices = await laptop.get("/devices")
        current, others = device_rows(devices.text)
        assert current is not None and len(others) == 1
        phone_id = others[0]
        token = await csrf_token(laptop, "/devices")
        revoked = await laptop.post(f"/devices/{phone_id}/revoke", data={"csrf_token": token})
        assert revoked.status_code == 303 and revoked.headers["location"] == "/devices?m=revoked"
        assert (await laptop.get("/dashboard")).status_code == 200
        gone = await phone.get("/dashboard")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/signin?m=ended-")
        notice = text(await phone.get(gone.headers["location"]))
        assert "Your session ended: it was revoked" in notice or "no longer recognised" in notice
        assert "expired" not in notice


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_sign_out_everywhere_else_keeps_this_browser(app: FastAPI, browser: Browser) -> None:
    async with browser() as laptop, browser() as phone:
        await sign_up(laptop)
        await sign_in(phone)
        token = await csrf_token(laptop, "/devices")
        response = await laptop.post("/devices/revoke-others", data={"csrf_token": token})
        assert response.status_code == 303
        assert (await laptop.get("/dashboard")).status_code == 200
        assert (await phone.get("/dashboard")).status_code == 303


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_password_change_signs_out_every_other_session(app: FastAPI, browser: Browser) -> None:
    async with browser() as laptop, browser() as phone:
        await sign_up(laptop)
        await sign_in(phone)
        token = await csrf_token(laptop, "/password")
        bad = await laptop.post(
            "/password",
            data={"current_password": "nope", "new_password": "new password 1", "csrf_token": token},
        )
        assert bad.status_code == 400 and "not your current password" in text(bad)
        changed = await laptop.post(
            "/password",
            data={"current_password": PASSWORD, "new_password": "new password 1", "csrf_token": token},
        )
        assert changed.status_code == 303 and changed.headers["location"] == "/dashboard?m=password"
        assert (await laptop.get("/dashboard")).status_code == 200
        assert (await phone.get("/dashboard")).status_code == 303
        await sign_out(laptop)
        assert (await sign_in(laptop)).status_code == 401
        assert (await sign_in(laptop, password="new password 1")).status_code == 303


async def test_without_a_secret_one_is_generated_and_kept(tmp_path: Path) -> None:
    said: list[str] = []
    create_app("jwt", None, tmp_path, echo=said.append, password_hasher=FAST_HASHER)
    path = tmp_path / "keyfob-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert said and "generated a secret" in said[0] and str(path) in said[0]
    first = path.read_text()
    said.clear()
    create_app("jwt", None, tmp_path, echo=said.append, password_hasher=FAST_HASHER)
    assert path.read_text() == first and said == []
    assert (tmp_path / "keyfob-demo.db").exists()
