"""The Django quick start (docs/quickstart/django.md) under a real server, in headless Chromium.

The runnable block of the quick start is written out as ``app.py`` and served by ``gunicorn --preload
-w 2`` (WSGI, forked workers) and by ``uvicorn`` (ASGI) on free loopback ports. Two Chromium instances
(two profiles: two devices of one user) sign in through the real form; one revokes the other from the
devices page; the other's next page load is the sign-in page.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._server_process import server_process
from tests.conftest import CHROMEDRIVER, CHROMIUM, require_chromium
from tests.security._log_hygiene import hygiene

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # require_chromium() skips (under CI=true: fails) with the reason
    pass

pytestmark = pytest.mark.chromium

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
APP_SECRET = "kf-django-browser-" + secrets.token_urlsafe(48)  # registered with log hygiene
WAIT = 10
STARTUP = 60


def quick_start_source() -> str:
    text = (ROOT / "docs" / "quickstart" / "django.md").read_text()
    (code,) = re.findall(r"^```python runnable\n(.*?)^```$", text, re.S | re.M)
    return code


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYFOB_", "AUTH_"))}
    env.update(KEYFOB_SECRET=APP_SECRET, APP_DATABASE=str(workdir / "db.sqlite3"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(workdir)]))
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick start as ``app.py``, migrated (``python app.py migrate``), with the user ``ada``."""
    require_chromium()
    workdir = tmp_path_factory.mktemp("django-quickstart")
    (workdir / "app.py").write_text(quick_start_source())
    create_user = (f"from django.contrib.auth.models import User; "
                   f"User.objects.create_user('ada', password={PASSWORD!r})")
    for step in (["migrate", "--verbosity", "0"], ["shell", "-c", create_user]):
        subprocess.run([sys.executable, "app.py", *step], cwd=workdir, env=_env(workdir), check=True,
                       timeout=120, capture_output=True)
    return workdir


@contextlib.contextmanager
def serve(kind: str, workdir: Path) -> Iterator[str]:
    """The quick start under ``kind`` (gunicorn / uvicorn) on a free port; its log checked after."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(workdir / "db.sqlite3")) as db, db:
        db.execute("DELETE FROM keyfob_sessions")  # the other server's sessions
    env = _env(workdir)
    port = free_port()
    if kind == "gunicorn":
        cmd = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}",
               "--access-logfile", "-", "app:application"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--lifespan", "on", "app:asgi_application"]
    log_path = workdir / f"{kind}.log"
    base = f"http://127.0.0.1:{port}"
    try:
        with server_process(cmd, cwd=workdir, env=env, log_path=log_path, ready_url=f"{base}/login",
                            what=kind, startup=STARTUP):
            yield base
    finally:
        server_log = log_path.read_text(errors="replace")
        hygiene().add_text(server_log, f"Django quick start under {kind}")
        bad = [ln for ln in server_log.splitlines() if "Traceback" in ln or " 500 " in ln]
        assert not bad, f"the quick start under {kind} logged errors:\n{server_log[-3000:]}"


@pytest.fixture(scope="module")
def browsers() -> Iterator[Callable[[str], webdriver.Chrome]]:
    require_chromium()
    selenium_log = logging.getLogger("selenium")  # it logs typed passwords at DEBUG: the driver, not keyfob
    saved = selenium_log.level
    selenium_log.setLevel(logging.INFO)
    opened: dict[str, webdriver.Chrome] = {}

    def browser(name: str) -> webdriver.Chrome:
        if name not in opened:
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--window-size=1024,768"):
                options.add_argument(arg)
            opened[name] = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver = opened[name]
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        return driver

    try:
        yield browser
    finally:
        for driver in opened.values():
            with contextlib.suppress(Exception):
                driver.quit()
        selenium_log.setLevel(saved)


def sign_in(driver: webdriver.Chrome, base: str) -> None:
    driver.get(base + "/login")
    driver.find_element(By.ID, "username").send_keys("ada")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "home")))
    assert driver.find_element(By.ID, "who").text == "ada"


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_revoking_the_other_device_from_the_devices_page_signs_it_out(
        server: str, browsers: Callable[[str], webdriver.Chrome], project: Path) -> None:
    with serve(server, project) as base:
        laptop, phone = browsers("laptop"), browsers("phone")
        sign_in(laptop, base)
        sign_in(phone, base)
        laptop.get(base + "/devices")
        rows = laptop.find_elements(By.CSS_SELECTOR, "#devices tr")
        assert len(rows) == 2
        (revoke,) = laptop.find_elements(By.CSS_SELECTOR, "#devices button.revoke")  # not this device
        revoke.click()
        WebDriverWait(laptop, WAIT).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices tr")) == 1)
        phone.get(base + "/")
        WebDriverWait(phone, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "signin")))
        assert phone.current_url.startswith(base + "/login")
        laptop.get(base + "/")
        assert laptop.find_element(By.ID, "who").text == "ada"
        cookie = laptop.get_cookie("sessionid")
        assert cookie is not None and cookie["httpOnly"]
