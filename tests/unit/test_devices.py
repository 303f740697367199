"""User-Agent → device-list labels, with ua-parser (``keyfob[ua]``) and with the built-in table."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from keyfob._devices import device_label

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
FIREFOX_MACOS = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0"
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/131.0.0.0"
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
SAFARI_MACOS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)

# (user agent, labels accepted: ua-parser's family names differ a little from the table's)
CASES = [
    (CHROME_WINDOWS, {"Chrome on Windows"}),
    (SAFARI_IOS, {"Safari on iOS", "Mobile Safari on iOS"}),
    (FIREFOX_MACOS, {"Firefox on macOS"}),
    (EDGE_WINDOWS, {"Edge on Windows"}),
    (CHROME_ANDROID, {"Chrome on Android", "Chrome Mobile on Android"}),
    (SAFARI_MACOS, {"Safari on macOS"}),
    ("curl/8.5.0", {"curl"}),
    ("", {"Unknown device"}),
    (None, {"Unknown device"}),
    ("\x00\x01 garbage \uffff", {"Unknown device"}),
]


@pytest.fixture(params=["ua-parser", "built-in table"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    device_label.cache_clear()
    if request.param == "built-in table":
        monkeypatch.setitem(sys.modules, "ua_parser", None)  # import fails: the fallback runs
    else:
        pytest.importorskip("ua_parser")
    yield str(request.param)
    device_label.cache_clear()


@pytest.mark.parametrize(("ua", "labels"), CASES, ids=[min(labels) for _, labels in CASES[:-3]]
                         + ["empty", "none", "garbage"])  # fmt: skip
def test_device_label_names_browser_and_system(parser: str, ua: str | None, labels: set[str]) -> None:
    assert device_label(ua) in labels


def test_device_label_never_raises_on_huge_input(parser: str) -> None:
    assert device_label("Firefox/1" + "x" * 100_000) == "Firefox"


@pytest.mark.parametrize(("sent", "kept"), [
    ("a" * 513, "a" * 512), ("a" * 512, "a" * 512), ("Firefox", "Firefox"), ("", None), (None, None),
])
def test_request_meta_keeps_at_most_512_characters_of_the_user_agent(sent: str | None,
                                                                     kept: str | None) -> None:
    from keyfob import RequestMeta

    assert RequestMeta(ip="192.0.2.1", user_agent=sent).user_agent == kept
