"""User-Agent → "Firefox on macOS"-style labels for the device list.

Uses ``ua-parser`` when installed (``keyfob[ua]``), else a small built-in table that knows the
common browsers and systems. Never raises.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ._session import MAX_USER_AGENT

_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"OPR/|Opera")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/")),
    ("Firefox", re.compile(r"Firefox/|FxiOS/")),
    ("Chrome", re.compile(r"Chrome/|CriOS/")),
    ("Safari", re.compile(r"Version/[\d.]+.*Safari/")),
    ("curl", re.compile(r"^curl/")),
    ("Python", re.compile(r"python-requests|python-httpx|aiohttp|urllib")),
)
_SYSTEMS = (
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Android", re.compile(r"Android")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("Linux", re.compile(r"Linux|X11")),
)


@lru_cache(maxsize=1024)
def device_label(user_agent: str | None) -> str:
    """A short human label for a User-Agent string ("Unknown device" when there is none)."""
    if not user_agent:
        return "Unknown device"
    ua = user_agent[:MAX_USER_AGENT]
    try:
        from ua_parser import parse

        result = parse(ua)
        browser = result.user_agent.family if result.user_agent else None
        system = result.os.family if result.os else None
        if system == "Mac OS X":
            system = "macOS"
        if browser and browser != "Other":
            return f"{browser} on {system}" if system and system != "Other" else browser
    except Exception:  # ua-parser missing or confused: fall back to the table
        pass
    browser = next((name for name, rx in _BROWSERS if rx.search(ua)), None)
    system = next((name for name, rx in _SYSTEMS if rx.search(ua)), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"
