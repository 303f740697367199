"""The demo's session policy in headless Chromium, for every strategy: "keep me signed in" on sign-in,
step-up before the password change, an admin's role change that shows at the user's next request, and
impersonation started and stopped from the admin console.

The demo servers are this module's own, served by ``_serve_demo.py`` with a clock the test moves
forward by writing a file (``clock_file``): ten minutes pass for the step-up without sleeping. Steps
follow test_admin_console's rules: after an action that navigates, wait for the new document and then
for what the test needs; never keep an element across a navigation (find it again).
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
from tests.browser.test_admin_console import (
    AdminDemo,
    as_admin,
    click_and_wait,
    enter,
    event_kinds,
    fill_and_submit,
    load,
    user_section,
)
from tests.browser.test_demo_in_chromium import (  # noqa: F401  (browsers, laptop, phone: fixtures)
    DEMO_SECRET,
    PASSWORD,
    STARTUP,
    browsers,
    free_port,
    heading,
    keyfob_cookies,
    laptop,
    new_email,
    notice,
    path_of,
    phone,
)
from tests.conftest import require_chromium
from tests.security._log_hygiene import hygiene

try:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
except ImportError:  # require_chromium() skips (under CI=true: fails) with the reason
    pass

pytestmark = pytest.mark.chromium

STRATEGIES = ["jwt", "database", "hybrid"]
NEW_PASSWORD = "a brand new passphrase"


class ClockDemo(AdminDemo):
    """A demo server whose engine clock runs ``offset`` seconds ahead of the wall clock."""

    clock_file: Path
    offset: float = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{self.offset}\n")
        os.replace(tmp, self.clock_file)  # atomic: the server never reads half a number


@contextlib.contextmanager
def serve(strategy: str, workdir: Path) -> Iterator[ClockDemo]:
    port, data_dir, log_path = free_port(), workdir / "data", workdir / "server.log"
    clock_file = workdir / "clock-offset"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYFOB_", "AUTH_"))}
    env["KEYFOB_SECRET"] = DEMO_SECRET
    script = Path(__file__).with_name("_serve_demo.py")
    cmd = [sys.executable, str(script), strategy, str(port), str(data_dir), f"clock_file={clock_file}"]
    base = f"http://127.0.0.1:{port}"
    try:
        with server_process(cmd, env=env, log_path=log_path, ready_url=f"{base}/signin", what="the demo",
                            startup=STARTUP):
            demo = ClockDemo(strategy, base, data_dir)
            demo.clock_file = clock_file
            yield demo
    finally:
        server_log = log_path.read_text(errors="replace")
        hygiene().add_text(server_log, f"the session policy demo ({strategy}) under Chromium")
        bad = [ln for ln in server_log.splitlines() if ln.startswith(("ERROR", "CRITICAL", "Traceback"))]
        assert not bad, f"the {strategy} demo logged errors:\n" + "\n".join(bad[:20])


@pytest.fixture(scope="module")
def policy_demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ClockDemo]]:
    require_chromium()
    with contextlib.ExitStack() as stack:
        running: dict[str, ClockDemo] = {}

        def demo(strategy: str) -> ClockDemo:
            if strategy not in running:
                running[strategy] = stack.enter_context(serve(strategy, tmp_path_factory.mktemp(strategy)))
            return running[strategy]

        yield demo


def fact(driver: webdriver.Chrome, label: str) -> str:
    """A row of the dashboard's facts table (the driver is on /dashboard)."""
    cell = driver.find_element(By.XPATH, f"//table[@class='facts']//tr[th='{label}']/td")
    return str(cell.text).splitlines()[0].strip()


def session_cookie(driver: webdriver.Chrome) -> dict[str, Any]:
    cookies = keyfob_cookies(driver)
    assert "keyfob.session-token" in cookies, f"the browser holds {sorted(cookies)}"
    return cookies["keyfob.session-token"]


def sign_in_form(driver: webdriver.Chrome, demo: ClockDemo, email: str, *, remember: bool) -> None:
    load(driver, demo.url("/signin"))
    box = driver.find_element(By.CSS_SELECTOR, 'form[action="/signin"] input[name="remember"]')
    assert box.is_selected() is False  # unticked unless the user asks
    if remember:
        box.click()
    fill_and_submit(driver, "/signin", {"email": email, "password": PASSWORD})
    assert path_of(driver) == "/dashboard" and heading(driver) == f"Signed in as {email}"


def sign_out(driver: webdriver.Chrome) -> None:
    click_and_wait(driver, 'form[action="/signout"] button[type="submit"]')
    assert path_of(driver) == "/signin"


def banner(driver: webdriver.Chrome) -> str:
    found = driver.find_elements(By.ID, "impersonation-banner")
    return str(found[0].text) if found else ""


# -- the tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_keep_me_signed_in_decides_whether_the_cookie_outlives_the_browser(
    strategy: str, policy_demos: Callable[[str], ClockDemo], laptop: webdriver.Chrome
) -> None:
    demo = policy_demos(strategy)
    as_admin(laptop, demo)  # the demo's first account (the admin) exists before anyone else signs up
    sign_out(laptop)
    email = new_email()
    enter(laptop, demo, email, new=True)
    sign_out(laptop)

    sign_in_form(laptop, demo, email, remember=False)
    cookie = session_cookie(laptop)
    assert cookie["session"] is True and cookie["expires"] == -1, cookie  # no Max-Age: dies with the browser
    assert fact(laptop, "Remembered").startswith("no")
    if strategy == "hybrid":
        assert keyfob_cookies(laptop)["keyfob.refresh-token"]["session"] is True
    sign_out(laptop)

    sign_in_form(laptop, demo, email, remember=True)
    cookie = session_cookie(laptop)
    assert cookie["session"] is False and cookie["expires"] > time.time() + 86400, cookie  # Max-Age: kept
    assert fact(laptop, "Remembered") == "yes"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_changing_the_password_ten_minutes_after_sign_in_asks_for_the_password_first(
    strategy: str, policy_demos: Callable[[str], ClockDemo], laptop: webdriver.Chrome
) -> None:
    demo = policy_demos(strategy)
    email = new_email()
    as_admin(laptop, demo)
    sign_out(laptop)
    enter(laptop, demo, email, new=True)
    click_and_wait(laptop, 'nav a[href="/password"]')
    assert heading(laptop) == "Change your password"  # just signed in: no step-up

    demo.advance(601)  # ten minutes and a second later, on the server's clock
    click_and_wait(laptop, 'nav a[href="/password"]')
    assert heading(laptop) == "Confirm your password", laptop.find_element(By.TAG_NAME, "main").text[:300]
    assert not laptop.find_elements(By.CSS_SELECTOR, 'form[action="/password"]')
    before = session_cookie(laptop)["value"]

    fill_and_submit(laptop, "/password/confirm", {"password": "not my password"})
    assert heading(laptop) == "Confirm your password" and "not your password" in laptop.page_source
    fill_and_submit(laptop, "/password/confirm", {"password": PASSWORD})
    assert path_of(laptop) == "/password" and heading(laptop) == "Change your password"
    assert notice(laptop).startswith("Password confirmed")
    assert session_cookie(laptop)["value"] != before  # elevate gave this browser a new token

    fill_and_submit(laptop, "/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert path_of(laptop) == "/dashboard" and notice(laptop).startswith("Password changed")
    sign_out(laptop)
    load(laptop, demo.url("/signin"))
    fill_and_submit(laptop, "/signin", {"email": email, "password": NEW_PASSWORD})
    assert heading(laptop) == f"Signed in as {email}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_role_change_in_the_admin_console_shows_at_the_users_next_click(
    strategy: str, policy_demos: Callable[[str], ClockDemo], laptop: webdriver.Chrome,
    phone: webdriver.Chrome
) -> None:
    demo = policy_demos(strategy)
    as_admin(laptop, demo)
    bea = new_email()
    enter(phone, demo, bea, new=True)
    assert fact(phone, "Role") == "user"
    before = session_cookie(phone)["value"]

    load(laptop, demo.url("/admin"))
    uid = user_section(laptop, bea)
    Select(laptop.find_element(By.CSS_SELECTOR, f'form[action="/admin/users/{uid}/role"] select')
           ).select_by_value("support")
    click_and_wait(laptop, f'form[action="/admin/users/{uid}/role"] button[type="submit"]')
    assert notice(laptop).startswith("The role was changed")

    click_and_wait(phone, 'nav a[href="/dashboard"]')  # her next click: no sign-in in between
    assert path_of(phone) == "/dashboard" and heading(phone) == f"Signed in as {bea}"
    assert fact(phone, "Role") == "support"
    if strategy == "database":  # the same session: the row changed, the cookie did not need to
        assert session_cookie(phone)["value"] == before

    load(laptop, demo.url(f"/admin/events?user={uid}&kind=admin.role_changed"))
    assert [kind for kind, _ in event_kinds(laptop)] == ["admin.role_changed"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_impersonation_from_the_console_shows_a_banner_and_stop_returns_to_the_admin(
    strategy: str, policy_demos: Callable[[str], ClockDemo], laptop: webdriver.Chrome,
    phone: webdriver.Chrome
) -> None:
    demo = policy_demos(strategy)
    admin = as_admin(laptop, demo)
    bea = new_email()
    enter(phone, demo, bea, new=True)

    load(laptop, demo.url("/admin"))
    uid = user_section(laptop, bea)
    click_and_wait(laptop, f'form[action="/admin/users/{uid}/impersonate"] button[type="submit"]')
    assert path_of(laptop) == "/dashboard" and heading(laptop) == f"Signed in as {bea}"
    shown = banner(laptop)
    assert f"Acting as {bea}" in shown and admin in shown and "Stop" in shown, shown
    assert fact(laptop, "Impersonated by") == admin

    load(phone, demo.url("/devices"))  # bea sees it in her device list
    if strategy != "jwt":
        assert f"an admin acting as you: {admin}" in phone.find_element(By.CSS_SELECTOR, "table.devices").text
    assert banner(phone) == ""

    click_and_wait(laptop, '#impersonation-banner button[type="submit"]')
    assert path_of(laptop) == "/admin" and heading(laptop) == "Admin console", laptop.current_url
    assert notice(laptop).startswith("You stopped acting as the user") and banner(laptop) == ""
    load(laptop, demo.url("/dashboard"))
    assert heading(laptop) == f"Signed in as {admin}"

    load(laptop, demo.url(f"/admin/events?user={uid}"))
    kinds = [kind for kind, _ in event_kinds(laptop)]
    assert "impersonation_started" in kinds and "impersonation_stopped" in kinds, kinds
    assert kinds.index("impersonation_stopped") < kinds.index("impersonation_started")  # newest first
    load(phone, demo.url("/dashboard"))  # bea's own session was never touched
    assert heading(phone) == f"Signed in as {bea}" and banner(phone) == ""
