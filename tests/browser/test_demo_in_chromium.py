"""The demo app in a real browser: Debian's headless Chromium, driven by selenium through
/usr/bin/chromedriver, against ``python -m keyfob demo`` served by uvicorn in a sub-process.

What only a browser shows: the cookie attributes it actually stores (read through CDP
``Network.getAllCookies``), that page scripts cannot see the session cookie, that the real forms
carry their CSRF token, and that a page from another origin cannot post a form that changes anything.

Two Chromium instances (two profiles, two cookie jars) play two devices of one user; they are
started once for the module and their cookies are cleared before each test.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import secrets
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests._server_process import server_process
from tests.conftest import CHROMEDRIVER, CHROMIUM, require_chromium
from tests.security._log_hygiene import hygiene

try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        JavascriptException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # require_chromium() skips (under CI=true: fails) with the reason
    pass

pytestmark = pytest.mark.chromium

STRATEGIES = ["jwt", "database", "hybrid"]
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "an attacker's chosen passphrase"
DEMO_SECRET = "kf-browser-" + secrets.token_urlsafe(48)  # registered with log hygiene (module constant)
SESSION_COOKIE = "keyfob.session-token"  # http://127.0.0.1: no __Host- prefix, not Secure
WAIT = 10  # seconds; every wait is for a page the browser is already loading
STARTUP = 30  # seconds for `keyfob demo` to answer


# -- the demo server ------------------------------------------------------------------------------------


class Demo:
    def __init__(self, strategy: str, base: str, data_dir: Path) -> None:
        self.strategy = strategy
        self.base = base
        self.data_dir = data_dir

    def url(self, path: str) -> str:
        return self.base + path

    def password_hash(self, email: str) -> str:
        """The stored argon2 hash of ``email``'s password, read straight from the demo's user table."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "keyfob-demo.db")) as db:
            row = db.execute("SELECT password_hash FROM users WHERE email = ?", (email,)).fetchone()
        assert row is not None, f"no user {email}"
        return str(row[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def demo_server(strategy: str, workdir: Path) -> Iterator[Demo]:
    """``python -m keyfob demo --strategy S`` on a free loopback port, stopped (and its log checked) after."""
    port, data_dir, log_path = free_port(), workdir / "data", workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYFOB_", "AUTH_"))}
    env["KEYFOB_SECRET"] = DEMO_SECRET
    cmd = [sys.executable, "-m", "keyfob", "demo", "--strategy", strategy, "--port", str(port),
           "--data-dir", str(data_dir)]
    base = f"http://127.0.0.1:{port}"
    try:
        with server_process(cmd, env=env, log_path=log_path, ready_url=f"{base}/signin", what="keyfob demo",
                            startup=STARTUP):
            yield Demo(strategy, base, data_dir)
    finally:
        server_log = log_path.read_text(errors="replace")
        hygiene().add_text(server_log, f"keyfob demo ({strategy}) under Chromium")
        bad = [ln for ln in server_log.splitlines() if ln.startswith(("ERROR", "CRITICAL", "Traceback"))]
        assert not bad, f"the {strategy} demo logged errors:\n" + "\n".join(bad[:20])


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Demo]]:
    """``demos(strategy)``: that strategy's demo server, started on first use and kept for the module."""
    require_chromium()
    with contextlib.ExitStack() as stack:
        running: dict[str, Demo] = {}

        def demo(strategy: str) -> Demo:
            if strategy not in running:
                workdir = tmp_path_factory.mktemp(f"demo-{strategy}")
                running[strategy] = stack.enter_context(demo_server(strategy, workdir))
            return running[strategy]

        yield demo


# -- the browsers ---------------------------------------------------------------------------------------


def launch_chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path given, selenium-manager never runs
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,768"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture(scope="module")
def browsers() -> Iterator[Callable[[str], webdriver.Chrome]]:
    """``browsers(name)``: a Chromium instance with its own profile, launched on first use."""
    require_chromium()
    # selenium logs every WebDriver command at DEBUG, the typed passwords included; that is the test
    # driver talking, not keyfob, so keep it out of the suite's log-hygiene check.
    selenium_log = logging.getLogger("selenium")
    saved_level = selenium_log.level
    selenium_log.setLevel(logging.INFO)
    opened: dict[str, webdriver.Chrome] = {}

    def browser(name: str) -> webdriver.Chrome:
        if name not in opened:
            opened[name] = launch_chromium()
        return opened[name]

    try:
        yield browser
    finally:
        for driver in opened.values():
            with contextlib.suppress(Exception):
                driver.quit()
        selenium_log.setLevel(saved_level)


def fresh(driver: webdriver.Chrome) -> webdriver.Chrome:
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get("about:blank")
    return driver


@pytest.fixture
def laptop(browsers: Callable[[str], webdriver.Chrome]) -> webdriver.Chrome:
    return fresh(browsers("laptop"))


@pytest.fixture
def phone(browsers: Callable[[str], webdriver.Chrome]) -> webdriver.Chrome:
    return fresh(browsers("phone"))


# -- the attacker's site ---------------------------------------------------------------------------------


class Attacker:
    """A plain ``http.server`` on another port that serves pages auto-submitting a form elsewhere."""

    def __init__(self) -> None:
        pages: dict[str, bytes] = {}
        self.pages = pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page_posting(self, host: str, action: str, fields: dict[str, str]) -> str:
        """Serve a page that posts ``fields`` to ``action`` as soon as it loads; return its URL."""
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        page = (
            '<!doctype html><title>win a prize</title>'
            f'<form id="f" method="post" action="{html.escape(action)}">{inputs}</form>'
            '<script>document.getElementById("f").submit()</script>'
        )
        path = f"/prize-{len(self.pages)}"
        self.pages[path] = page.encode()
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    site = Attacker()
    try:
        yield site
    finally:
        site.close()


# -- what a user does -----------------------------------------------------------------------------------

def new_email() -> str:
    return f"user-{secrets.token_hex(4)}@example.com"


def path_of(driver: webdriver.Chrome) -> str:
    return urlsplit(driver.current_url).path


def heading(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def notice(driver: webdriver.Chrome) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, "p.notice")
    return str(found[0].text) if found else ""


def loaded(driver: webdriver.Chrome) -> bool:
    return bool(driver.execute_script("return document.readyState") == "complete")


def new_page_loaded(driver: webdriver.Chrome) -> bool:
    """The marked page (see ``submit``) was replaced and the new one finished loading."""
    script = "return !window.keyfobOldPage && document.readyState === 'complete'"
    try:
        return bool(driver.execute_script(script))
    except WebDriverException as exc:  # mid-swap, chromedriver may answer with an inspector error
        if "inspector error" in str(exc) or "context" in str(exc).lower():
            return False
        raise


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    """A wait that rides over a navigation in progress (a script run while the page is swapped fails)."""
    transient = (JavascriptException, StaleElementReferenceException)
    return WebDriverWait(driver, WAIT, ignored_exceptions=transient)


def submit(driver: webdriver.Chrome, action: str, fields: dict[str, str] | None = None) -> None:
    """Fill the page's form that posts to ``action``, click its button, wait for the next page."""
    form = driver.find_element(By.CSS_SELECTOR, f'form[action="{action}"]')
    for name, value in (fields or {}).items():
        form.find_element(By.NAME, name).send_keys(value)
    # Mark this document, then wait for a loaded document without the mark. Polling the old page's
    # element for staleness races the navigation: chromedriver may answer "Node with given id does not
    # belong to the document" (an unknown error, not StaleElementReferenceException) mid-swap.
    driver.execute_script("window.keyfobOldPage = true")
    form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait(driver).until(new_page_loaded)


def sign_up(driver: webdriver.Chrome, demo: Demo, email: str) -> None:
    driver.get(demo.url("/signup"))
    submit(driver, "/signup", {"email": email, "password": PASSWORD})
    assert path_of(driver) == "/dashboard", driver.find_element(By.TAG_NAME, "body").text[:1000]
    assert heading(driver) == f"Signed in as {email}"


def sign_in(driver: webdriver.Chrome, demo: Demo, email: str) -> None:
    driver.get(demo.url("/signin"))
    submit(driver, "/signin", {"email": email, "password": PASSWORD})
    assert path_of(driver) == "/dashboard", driver.find_element(By.TAG_NAME, "body").text[:1000]
    assert heading(driver) == f"Signed in as {email}"


def session_id(driver: webdriver.Chrome, demo: Demo) -> str:
    """The session id the dashboard shows (the public handle, not the cookie)."""
    driver.get(demo.url("/dashboard"))
    assert path_of(driver) == "/dashboard"
    cell = driver.find_element(By.XPATH, "//table[@class='facts']//tr[th='Session id']/td")
    return str(cell.text).splitlines()[0].strip()


def keyfob_cookies(driver: webdriver.Chrome) -> dict[str, dict[str, Any]]:
    """keyfob's cookies as the browser stores them, attributes included (CDP, not document.cookie).

    Keyed without the demo's port: ``keyfob-8123.session-token`` (the demo names its cookies after
    its port, so that demos side by side keep apart) is returned as ``keyfob.session-token``.
    """
    cookies = driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    out = {}
    for c in cookies:
        bare = c["name"].removeprefix("__Host-").removeprefix("__Secure-")
        name = re.sub(r"^keyfob-\d+\.", "keyfob.", bare)
        if name.startswith("keyfob."):
            hygiene().add_token(c["value"], f"Chromium cookie {c['name']}")
            out[name] = c
    return out


# -- the tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sign_up_lands_on_the_dashboard_with_an_httponly_lax_cookie_that_survives_reload(
    strategy: str, demos: Callable[[str], Demo], laptop: webdriver.Chrome
) -> None:
    demo = demos(strategy)
    email = new_email()
    sign_up(laptop, demo, email)
    assert notice(laptop).startswith("Welcome!")

    cookies = keyfob_cookies(laptop)
    assert SESSION_COOKIE in cookies, f"the browser holds {sorted(cookies)}"
    if strategy == "hybrid":
        assert "keyfob.refresh-token" in cookies
    for name, cookie in cookies.items():
        assert cookie["httpOnly"] is True, f"{name} is readable by scripts"
        assert cookie["sameSite"] == "Lax", f"{name} is SameSite={cookie.get('sameSite')}"
        assert cookie["secure"] is False, f"{name} is Secure on plain http://127.0.0.1"
        assert cookie["domain"] == "127.0.0.1" and cookie["path"] == "/", name  # host-only, whole app
    visible = str(laptop.execute_script("return document.cookie"))
    for name, cookie in cookies.items():
        assert name not in visible and cookie["value"] not in visible, f"document.cookie shows {name}"

    laptop.refresh()
    assert path_of(laptop) == "/dashboard" and heading(laptop) == f"Signed in as {email}"
    shown = [li.text for li in laptop.find_elements(By.CSS_SELECTOR, "ul.cookies li")]
    # the server got the cookie back (named after the demo's port)
    assert any(re.match(r"keyfob-\d+\.session-token ", item) for item in shown), shown


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sign_out_everywhere_else_bounces_the_other_device_and_sign_out_ends_this_one(
    strategy: str, demos: Callable[[str], Demo], laptop: webdriver.Chrome, phone: webdriver.Chrome
) -> None:
    demo = demos(strategy)
    email = new_email()
    sign_up(laptop, demo, email)
    sign_in(phone, demo, email)
    laptop_sid, phone_sid = session_id(laptop, demo), session_id(phone, demo)
    assert laptop_sid != phone_sid

    laptop.get(demo.url("/devices"))
    if strategy == "jwt":  # stateless: no list to show, but "sign out everywhere else" still works
        assert "sessions are stateless" in laptop.find_element(By.TAG_NAME, "main").text
    else:
        rows = laptop.find_elements(By.CSS_SELECTOR, "table.devices tbody tr")
        listed = {
            row.find_element(By.TAG_NAME, "form").get_attribute("action").rsplit("/", 2)[-2]: row
            for row in rows
        }
        assert set(listed) == {laptop_sid, phone_sid}
        assert "this device" in listed[laptop_sid].text and "this device" not in listed[phone_sid].text

    submit(laptop, "/devices/revoke-others")
    assert path_of(laptop) == "/devices" and notice(laptop) == "Every other device was signed out."
    if strategy != "jwt":
        rows = laptop.find_elements(By.CSS_SELECTOR, "table.devices tbody tr")
        assert len(rows) == 1 and "this device" in rows[0].text
    laptop.get(demo.url("/dashboard"))
    assert heading(laptop) == f"Signed in as {email}"

    phone.refresh()  # the phone was on its dashboard
    assert path_of(phone) == "/signin", phone.current_url
    assert notice(phone).startswith("Your session ended")
    phone.get(demo.url("/dashboard"))
    assert path_of(phone) == "/signin"

    laptop.get(demo.url("/dashboard"))
    submit(laptop, "/signout")
    assert path_of(laptop) == "/signin" and notice(laptop) == "You are signed out."
    assert SESSION_COOKIE not in keyfob_cookies(laptop)
    laptop.get(demo.url("/dashboard"))
    assert path_of(laptop) == "/signin" and heading(laptop) == "Sign in"


ATTACKS = {
    # as if the attacker knew the password too: only the CSRF check stands in the way
    "/password": {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    "/signout": {},
}


@pytest.mark.parametrize(
    "attacker_host", ["127.0.0.1", "localhost"], ids=["same-site-other-port", "cross-site"]
)
def test_a_form_posted_from_another_origin_is_refused_and_changes_nothing(
    attacker_host: str, demos: Callable[[str], Demo], laptop: webdriver.Chrome, attacker: Attacker
) -> None:
    # 127.0.0.1 on another port is the same site (SameSite=Lax cookies go along) but another origin;
    # localhost is another site (the cookies stay home). The forged forms even carry the victim's
    # own CSRF token, so on the same site only the Origin check refuses them.
    demo = demos("database")
    email = new_email()
    sign_up(laptop, demo, email)
    before_sid, before_hash = session_id(laptop, demo), demo.password_hash(email)
    token = str(laptop.find_element(By.NAME, "csrf_token").get_attribute("value"))
    hygiene().add_token(token, "the victim's CSRF token")

    for target, fields in ATTACKS.items():
        laptop.get(attacker.page_posting(attacker_host, demo.url(target), {"csrf_token": token, **fields}))
        wait(laptop).until(
            lambda d: d.current_url.startswith(demo.base) and loaded(d),
            message=f"the forged POST {target} never reached the demo",
        )
        landed_on, answer = laptop.current_url, laptop.find_element(By.TAG_NAME, "body").text

        assert session_id(laptop, demo) == before_sid, f"POST {target}: the victim's session changed"
        assert demo.password_hash(email) == before_hash, f"POST {target}: the password changed"
        # the browser did post the form, and the demo answered 403 csrf_failed
        assert landed_on == demo.url(target) and "csrf_failed" in answer, (landed_on, answer[:300])
