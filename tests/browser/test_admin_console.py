"""The demo's admin console in headless Chromium: kicking a user, and a replayed refresh token in the log.

The demo servers here are this module's own (the first account that signs up on a server is its admin),
served by ``_serve_demo.py`` with ``refresh_grace=1`` so that a replay can be told from a race after one
second instead of ten. The browsers, the log checks and the user helpers come from
``test_demo_in_chromium``.

Robustness rules for every step: after an action that navigates, wait for the *new* document (a mark
set on the old one is gone, and it has finished loading) and then for the element the test needs;
never keep an element across a navigation.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._server_process import server_process
from tests.browser.test_demo_in_chromium import (  # noqa: F401  (browsers, laptop, phone: fixtures)
    DEMO_SECRET,
    PASSWORD,
    STARTUP,
    Demo,
    browsers,
    free_port,
    heading,
    keyfob_cookies,
    laptop,
    loaded,
    new_email,
    notice,
    path_of,
    phone,
    wait,
)
from tests.conftest import require_chromium
from tests.security._log_hygiene import hygiene

try:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
except ImportError:  # require_chromium() skips (under CI=true: fails) with the reason
    pass

pytestmark = pytest.mark.chromium

STRATEGIES = ["jwt", "database", "hybrid"]
REFRESH_GRACE = 1.0  # seconds; `keyfob demo` keeps keyfob's default (10 s)


# -- this module's demo servers -----------------------------------------------------------------------


class AdminDemo(Demo):
    """A demo server and the email of its admin (the first account that signed up on it)."""

    admin: str | None = None


@contextlib.contextmanager
def serve(strategy: str, workdir: Path) -> Iterator[AdminDemo]:
    port, data_dir, log_path = free_port(), workdir / "data", workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYFOB_", "AUTH_"))}
    env["KEYFOB_SECRET"] = DEMO_SECRET
    script = Path(__file__).with_name("_serve_demo.py")
    cmd = [sys.executable, str(script), strategy, str(port), str(data_dir), f"refresh_grace={REFRESH_GRACE}"]
    base = f"http://127.0.0.1:{port}"
    try:
        with server_process(cmd, env=env, log_path=log_path, ready_url=f"{base}/signin", what="the demo",
                            startup=STARTUP):
            yield AdminDemo(strategy, base, data_dir)
    finally:
        server_log = log_path.read_text(errors="replace")
        hygiene().add_text(server_log, f"the admin console demo ({strategy}) under Chromium")
        bad = [ln for ln in server_log.splitlines() if ln.startswith(("ERROR", "CRITICAL", "Traceback"))]
        assert not bad, f"the {strategy} demo logged errors:\n" + "\n".join(bad[:20])


@pytest.fixture(scope="module")
def admin_demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], AdminDemo]]:
    require_chromium()
    with contextlib.ExitStack() as stack:
        running: dict[str, AdminDemo] = {}

        def demo(strategy: str) -> AdminDemo:
            if strategy not in running:
                running[strategy] = stack.enter_context(serve(strategy, tmp_path_factory.mktemp(strategy)))
            return running[strategy]

        yield demo


# -- robust steps ---------------------------------------------------------------------------------------


def _mark(driver: webdriver.Chrome) -> None:
    driver.execute_script("window.keyfobOldPage = true")


def _new_page(driver: webdriver.Chrome) -> bool:
    return bool(driver.execute_script("return !window.keyfobOldPage && document.readyState === 'complete'"))


def load(driver: webdriver.Chrome, url: str) -> None:
    """Open ``url`` and wait until the new document has loaded (``get`` alone may return early)."""
    if driver.current_url.startswith("http"):
        _mark(driver)
    driver.get(url)
    wait(driver).until(_new_page, message=f"{url} did not load")
    wait(driver).until(lambda d: d.find_elements(By.TAG_NAME, "h1"), message=f"{url} has no heading")


def click_and_wait(driver: webdriver.Chrome, css: str) -> None:
    """Click the element ``css`` (found afresh) and wait for the page it leads to, heading included."""
    _mark(driver)
    driver.find_element(By.CSS_SELECTOR, css).click()
    wait(driver).until(_new_page, message=f"clicking {css} did not lead to a new page")
    wait(driver).until(lambda d: d.find_elements(By.TAG_NAME, "h1"), message=f"after {css}: no heading")


def fill_and_submit(driver: webdriver.Chrome, action: str, fields: dict[str, str]) -> None:
    for name, value in fields.items():
        driver.find_element(By.CSS_SELECTOR, f'form[action="{action}"] [name="{name}"]').send_keys(value)
    click_and_wait(driver, f'form[action="{action}"] button[type="submit"]')


def enter(driver: webdriver.Chrome, demo: AdminDemo, email: str, *, new: bool) -> None:
    """Sign up (``new``) or sign in as ``email``; lands on the dashboard."""
    page = "/signup" if new else "/signin"
    load(driver, demo.url(page))
    fill_and_submit(driver, page, {"email": email, "password": PASSWORD})
    assert path_of(driver) == "/dashboard", driver.find_element(By.TAG_NAME, "body").text[:500]
    assert heading(driver) == f"Signed in as {email}"


def as_admin(driver: webdriver.Chrome, demo: AdminDemo) -> str:
    """Sign ``driver`` in as the demo's admin (signing the admin up on the demo's first use)."""
    if demo.admin is None:
        demo.admin = "admin-" + new_email()
        enter(driver, demo, demo.admin, new=True)
    else:
        enter(driver, demo, demo.admin, new=False)
    return demo.admin


def user_section(driver: webdriver.Chrome, email: str) -> str:
    """The id of ``email``'s section on /admin (the driver is on /admin)."""
    sections = driver.find_elements(By.XPATH, f"//section[@class='user'][h2[contains(., '{email}')]]")
    assert len(sections) == 1, f"{email} is not listed once on /admin"
    return str(sections[0].get_attribute("data-user"))


def event_kinds(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    """(kind, class) of each row of the event table on the current page."""
    rows = driver.find_elements(By.CSS_SELECTOR, "table.events tr.event")
    return [(str(r.get_attribute("data-kind")), str(r.get_attribute("class"))) for r in rows]


# -- the tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_admin_kicks_a_user_and_their_open_page_lands_on_sign_in_at_the_next_click(
    strategy: str, admin_demos: Callable[[str], AdminDemo], laptop: webdriver.Chrome, phone: webdriver.Chrome
) -> None:
    demo = admin_demos(strategy)
    as_admin(laptop, demo)
    bea = new_email()
    enter(phone, demo, bea, new=True)  # bea's page stays open on the phone

    load(laptop, demo.url("/admin"))
    uid = user_section(laptop, bea)
    section = laptop.find_element(By.ID, f"user-{uid}").text
    if strategy != "jwt":  # her session is listed, with device and IP
        assert "127.0.0.1" in section and "Chrome" in section, section
    click_and_wait(laptop, f'form[action="/admin/users/{uid}/kick"] button[type="submit"]')
    assert path_of(laptop) == "/admin" and notice(laptop) == "The user was signed out everywhere."
    if strategy != "jwt":
        assert "No active sessions." in laptop.find_element(By.ID, f"user-{uid}").text

    click_and_wait(phone, 'nav a[href="/devices"]')  # her next click
    assert path_of(phone) == "/signin" and heading(phone) == "Sign in", phone.current_url
    assert notice(phone).startswith("Your session ended"), notice(phone)
    load(phone, demo.url("/dashboard"))
    assert path_of(phone) == "/signin"

    load(laptop, demo.url(f"/admin/events?user={uid}&kind=admin.kicked"))
    assert [kind for kind, _ in event_kinds(laptop)] == ["admin.kicked"]
    assert f"by {demo.admin}" in laptop.find_element(By.CSS_SELECTOR, "table.events").text
    load(laptop, demo.url("/dashboard"))  # the admin kept their own session
    assert heading(laptop) == f"Signed in as {demo.admin}"


def _cookie(driver: webdriver.Chrome, demo: AdminDemo, logical: str) -> dict[str, Any]:
    cookies = keyfob_cookies(driver)
    assert logical in cookies, f"the browser holds {sorted(cookies)}"
    return cookies[logical]


def test_a_replayed_refresh_token_appears_in_the_event_log_highlighted(
    admin_demos: Callable[[str], AdminDemo], laptop: webdriver.Chrome, phone: webdriver.Chrome
) -> None:
    demo = admin_demos("hybrid")
    as_admin(laptop, demo)
    bea = new_email()
    enter(phone, demo, bea, new=True)
    stolen = _cookie(phone, demo, "keyfob.refresh-token")  # a copy of her refresh token
    access = _cookie(phone, demo, "keyfob.session-token")

    # Her access token goes (as after 10 minutes); the next page load refreshes: a new refresh token.
    phone.execute_cdp_cmd("Network.deleteCookies", {"name": access["name"], "url": demo.base})
    load(phone, demo.url("/dashboard"))
    assert heading(phone) == f"Signed in as {bea}"
    assert _cookie(phone, demo, "keyfob.refresh-token")["value"] != stolen["value"]

    # The thief replays the copy once the grace window for racing tabs is over.
    time.sleep(REFRESH_GRACE + 0.5)  # a server-side window in wall-clock time: nothing to poll
    phone.execute_cdp_cmd("Network.deleteCookies", {"name": access["name"], "url": demo.base})
    phone.execute_cdp_cmd("Network.setCookie", {
        "name": stolen["name"], "value": stolen["value"], "url": demo.base, "path": "/",
        "httpOnly": True, "sameSite": "Lax",
    })
    load(phone, demo.url("/dashboard"))
    assert path_of(phone) == "/signin", phone.current_url
    assert "refresh token was used a second time" in notice(phone), notice(phone)

    load(laptop, demo.url("/admin/events?kind=reuse_detected"))
    rows = event_kinds(laptop)
    assert rows and rows[0][0] == "reuse_detected" and "theft" in rows[0][1].split(), rows
    row = laptop.find_element(By.CSS_SELECTOR, "table.events tr.theft")
    assert "possible token theft" in row.text and bea in row.text, row.text
    assert row.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"  # highlighted, visibly


def test_back_after_sign_out_shows_nothing_private(
    admin_demos: Callable[[str], AdminDemo], laptop: webdriver.Chrome
) -> None:
    demo = admin_demos("database")
    email = as_admin(laptop, demo)
    load(laptop, demo.url("/admin"))  # the most private page there is: every user and their sessions
    click_and_wait(laptop, 'form[action="/signout"] button[type="submit"]')
    assert path_of(laptop) == "/signin" and notice(laptop) == "You are signed out."
    _mark(laptop)
    laptop.back()
    # Back either re-requests /admin (no-store: bounced to a fresh sign-in page) or shows a kept copy
    # of the old /admin document (another URL): wait for either, then look at what is shown.
    wait(laptop).until(lambda d: path_of(d) != "/signin" or _new_page(d), message="Back did nothing")
    wait(laptop).until(loaded)
    body = laptop.find_element(By.TAG_NAME, "body").text
    assert email not in body and "Admin console" not in body, body[:500]
    assert path_of(laptop) == "/signin"
