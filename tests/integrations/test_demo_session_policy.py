"""The demo's session-policy features over HTTP, for every strategy: remember-me on sign-in, step-up
before the password change, a role change from the admin console that reaches the user's next request,
and impersonation (start, banner, device list, stop, events, admin targets need permission).

The browser tests (tests/browser/test_session_policy_in_chromium.py) drive the same flows in Chromium.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from keyfob._clock import FakeClock

from .test_demo import (  # noqa: F401  (app, browser: fixtures)
    ADMIN,
    PASSWORD,
    STRATEGIES,
    USER_B,
    Browser,
    app,
    browser,
    csrf_token,
    event_rows,
    sign_in,
    sign_up,
    text,
    user_id_of,
)

pytestmark = pytest.mark.anyio


def set_cookie_headers(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def session_cookies(response: httpx.Response) -> list[str]:
    """The Set-Cookie headers of keyfob's session (and refresh) cookies, not CSRF."""
    return [h for h in set_cookie_headers(response) if re.match(r"keyfob\.(session|refresh)-token=", h)]


def role_shown(html: str) -> str:
    match = re.search(r"<tr><th>Role</th><td>([^<]+)<", html)
    assert match is not None, html[:2000]
    return match.group(1).strip()


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_sign_in_without_keep_me_signed_in_gets_a_browser_session_cookie(
    app: FastAPI, browser: Browser
) -> None:
    async with browser() as laptop, browser() as kiosk:
        await sign_up(laptop)
        token = await csrf_token(kiosk, "/signin")
        forgetful = await kiosk.post("/signin", data={"email": "ada@example.com", "password": PASSWORD,
                                                      "csrf_token": token})
        assert forgetful.status_code == 303
        cookies = session_cookies(forgetful)
        assert cookies and all("max-age" not in c.lower() for c in cookies), cookies
        assert "no: a browser-session cookie" in text(await kiosk.get("/dashboard"))

        token = await csrf_token(laptop, "/dashboard")
        await laptop.post("/signout", data={"csrf_token": token})
        token = await csrf_token(laptop, "/signin")
        kept = await laptop.post("/signin", data={"email": "ada@example.com", "password": PASSWORD,
                                                  "remember": "on", "csrf_token": token})
        assert kept.status_code == 303
        cookies = session_cookies(kept)
        assert cookies and all("max-age=" in c.lower() for c in cookies), cookies


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_password_change_asks_for_the_password_again_after_ten_minutes(
    app: FastAPI, browser: Browser, clock: FakeClock
) -> None:
    async with browser() as laptop:
        await sign_up(laptop)
        page = await laptop.get("/password")
        assert page.status_code == 200 and 'action="/password"' in page.text  # fresh: straight on

        clock.advance(601)
        page = await laptop.get("/password")
        assert page.status_code == 403 and 'action="/password/confirm"' in page.text
        assert 'action="/password"' not in page.text
        token = await csrf_token(laptop, "/dashboard")
        skipped = await laptop.post("/password", data={"current_password": PASSWORD,
                                                       "new_password": "new password 1", "csrf_token": token})
        assert skipped.status_code == 403 and 'action="/password/confirm"' in skipped.text  # no way around it

        wrong = await laptop.post("/password/confirm", data={"password": "nope", "csrf_token": token})
        assert wrong.status_code == 400 and "not your password" in wrong.text
        before = {c for c in laptop.cookies.jar if c.name.startswith("keyfob.session")}
        confirmed = await laptop.post("/password/confirm", data={"password": PASSWORD, "csrf_token": token})
        assert confirmed.status_code == 303 and confirmed.headers["location"] == "/password?m=confirmed"
        assert session_cookies(confirmed), "elevate issues a new session token"
        after = {c for c in laptop.cookies.jar if c.name.startswith("keyfob.session")}
        assert {c.value for c in after} != {c.value for c in before}

        token = await csrf_token(laptop, "/password")
        changed = await laptop.post("/password", data={"current_password": PASSWORD,
                                                       "new_password": "new password 1", "csrf_token": token})
        assert changed.status_code == 303 and changed.headers["location"] == "/dashboard?m=password"
    events = [kind for kind, _ in event_rows((await _admin_events(app, browser)).text)]
    assert "elevated" in events


async def _admin_events(app: FastAPI, browser: Browser) -> httpx.Response:
    async with browser() as admin:
        await sign_in(admin, "ada@example.com", "new password 1")
        return await admin.get("/admin/events")


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_a_role_change_from_the_console_shows_at_the_users_next_request_without_sign_out(
    app: FastAPI, browser: Browser
) -> None:
    async with browser() as admin, browser() as bea:
        await sign_up(admin, ADMIN)
        await sign_up(bea, USER_B)
        assert role_shown((await bea.get("/dashboard")).text) == "user"
        uid = user_id_of(app, USER_B)
        token = await csrf_token(admin, "/admin")
        changed = await admin.post(f"/admin/users/{uid}/role", data={"role": "support", "csrf_token": token})
        assert changed.status_code == 303 and changed.headers["location"] == "/admin?m=role"

        page = await bea.get("/dashboard")  # her next request: same browser, no sign-in
        assert page.status_code == 200 and role_shown(page.text) == "support"
        assert (await bea.get("/admin")).status_code == 403

        token = await csrf_token(admin, "/admin")
        await admin.post(f"/admin/users/{uid}/role", data={"role": "admin", "csrf_token": token})
        page = await bea.get("/dashboard")
        assert role_shown(page.text) == "admin" and 'href="/admin"' in page.text
        assert (await bea.get("/admin")).status_code == 200

        own = await admin.post(f"/admin/users/{user_id_of(app, ADMIN)}/role",
                               data={"role": "user", "csrf_token": await csrf_token(admin, "/admin")})
        assert own.headers["location"] == "/admin?m=own-role"
        log = await admin.get(f"/admin/events?user={uid}&kind=admin.role_changed")
        assert [k for k, _ in event_rows(log.text)] == ["admin.role_changed", "admin.role_changed"]


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_impersonation_starts_from_the_console_shows_a_banner_and_stop_returns_to_the_admin(
    app: FastAPI, browser: Browser
) -> None:
    async with browser() as admin, browser() as bea:
        await sign_up(admin, ADMIN)
        await sign_up(bea, USER_B)
        uid = user_id_of(app, USER_B)
        token = await csrf_token(admin, "/admin")
        started = await admin.post(f"/admin/users/{uid}/impersonate", data={"csrf_token": token})
        assert started.status_code == 303 and started.headers["location"] == "/dashboard"
        page = await admin.get("/dashboard")
        assert f"Signed in as {USER_B}" in page.text
        assert 'id="impersonation-banner"' in page.text and f"Acting as {USER_B}" in page.text
        assert 'action="/impersonation/stop"' in page.text
        assert (await admin.get("/admin")).status_code == 403  # the console is the admin's, not bea's
        assert (await admin.get("/password")).status_code == 403  # no password changes while acting

        devices = await bea.get("/devices")
        if app.state.keyfob.settings.strategy != "jwt":  # jwt keeps no list of sessions
            assert f"an admin acting as you: {ADMIN}" in devices.text
        assert 'id="impersonation-banner"' not in (await bea.get("/dashboard")).text  # bea's own session

        token = await csrf_token(admin, "/dashboard")
        stopped = await admin.post("/impersonation/stop", data={"csrf_token": token})
        assert stopped.status_code == 303 and stopped.headers["location"] == "/admin?m=imp-stopped"
        back = await admin.get("/admin")
        assert back.status_code == 200 and 'id="impersonation-banner"' not in back.text
        assert f"Signed in as {ADMIN}" in (await admin.get("/dashboard")).text
        if app.state.keyfob.settings.strategy != "jwt":
            assert "an admin acting as you" not in (await bea.get("/devices")).text

        log = await admin.get(f"/admin/events?user={uid}")
        kinds = [k for k, _ in event_rows(log.text)]
        assert "impersonation_started" in kinds and "impersonation_stopped" in kinds
        assert kinds.index("impersonation_stopped") < kinds.index("impersonation_started")  # newest first


@pytest.mark.parametrize("app", STRATEGIES, indirect=True)
async def test_impersonating_another_admin_needs_the_explicit_permission(
    app: FastAPI, browser: Browser
) -> None:
    async with browser() as admin, browser() as other:
        await sign_up(admin, ADMIN)
        await sign_up(other, USER_B)
        uid = user_id_of(app, USER_B)
        token = await csrf_token(admin, "/admin")
        await admin.post(f"/admin/users/{uid}/role", data={"role": "admin", "csrf_token": token})
        refused = await admin.post(f"/admin/users/{uid}/impersonate", data={"csrf_token": token})
        assert refused.headers["location"] == "/admin?m=imp-admin"
        assert "needs explicit permission" in (await admin.get("/admin?m=imp-admin")).text
        assert 'id="impersonation-banner"' not in (await admin.get("/dashboard")).text

        token = await csrf_token(admin, "/admin")
        allowed = await admin.post(f"/admin/users/{uid}/impersonate",
                                   data={"allow_admin": "on", "csrf_token": token})
        assert allowed.headers["location"] == "/dashboard"
        assert f"Acting as {USER_B}" in (await admin.get("/dashboard")).text
