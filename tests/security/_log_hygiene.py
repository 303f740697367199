"""Suite-wide log hygiene: no secret, token or password in any log line (issue 5, ASVS 16.2.5).

A pytest plugin, registered by ``tests/conftest.py`` for every run of the suite:

* **what is secret** is learned while the suite runs, not listed by hand: every secret a
  ``Settings``, ``JWECodec`` or ``KeyRing`` is built from, every value keyfob writes into a cookie
  (session tokens, refresh tokens, their chunks, CSRF cookies), every CSRF token, every token
  ``Keyfob.create`` / ``refresh`` / ``rotate`` hands out raw, every JWE/JWS the tokens layer
  encodes, every password the demo's user table hashes or checks, plus the module-level
  ``*SECRET*`` / ``*PASSWORD*`` / ``*TOKEN*`` constants of the test modules. Tests that run a
  server in a sub-process register what the client saw (``hygiene().add_token``) and hand over
  the server's output (``hygiene().add_text``);
* **what is logged**: a handler on the root logger (and on ``keyfob``, in case a test stops it
  propagating) at level NOTSET, with the ``keyfob`` logger lowered to DEBUG for the session, keeps
  each record's message, every ``extra`` attribute and the formatted exception;
* **the check**, at the end of the session: any registered value found in any kept line fails the
  run (exit status 1) with a report that names the value's kind and where it was logged, never the
  value itself.

Tokens are matched by their last 16 characters (the MAC/tag or random tail: unique per token),
looked up for every 16-character window of a line, then confirmed with a substring test — linear
in the size of the logs, whatever the number of tokens.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import sys
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

__all__ = ["Finding", "LeakRegistry", "LogCollector", "hygiene", "record_text"]

WINDOW = 16
MIN_SECRET = 12  # shorter "secrets" (test placeholders like "s") would match ordinary words
MIN_PASSWORD = 8
MIN_TOKEN = 20
_CONSTANT_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|PASSPHRASE|TOKEN", re.IGNORECASE)
# LogRecord's own attributes: everything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write for ``record``: message, ``extra`` values, traceback."""
    try:
        parts = [record.getMessage()]
    except Exception:  # a bad format string: keep what there is
        parts = [str(record.msg), repr(record.args)]
    for key, value in vars(record).items():
        if key not in _STANDARD:
            parts.append(f"{key}={value}")
    if record.exc_info and record.exc_info[0] is not None:
        parts.append(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


@dataclass(frozen=True)
class Finding:
    kind: str  # "secret" | "password" | "token"
    origin: str  # where the value was learned (e.g. "Settings.secrets", "cookie keyfob.session-token")
    where: str  # where it was logged (logger name, or the sub-process)
    preview: str  # a prefix of the value's SHA-256: enough to tell leaks apart, useless to an attacker


@dataclass
class LeakRegistry:
    """The values that must never reach a log line, and a fast scan for them."""

    plain: dict[str, tuple[str, str]] = field(default_factory=dict)  # value -> (kind, origin)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    _by_tail: dict[str, list[str]] = field(default_factory=dict)

    def add_secret(self, value: object, origin: str, kind: str = "secret") -> None:
        minimum = MIN_PASSWORD if kind == "password" else MIN_SECRET
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                return
        if isinstance(value, str) and len(value) >= minimum and value not in self.plain:
            self.plain[value] = (kind, origin)

    def add_token(self, value: object, origin: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_TOKEN or value in self.tokens:
            return
        self.tokens[value] = ("token", origin)
        self._by_tail.setdefault(value[-WINDOW:], []).append(value)

    def __contains__(self, value: object) -> bool:
        return value in self.plain or value in self.tokens

    def __len__(self) -> int:
        return len(self.plain) + len(self.tokens)

    def scan(self, text: str, where: str) -> list[Finding]:
        found: dict[str, tuple[str, str]] = {}
        for value, meta in self.plain.items():
            if value in text:
                found[value] = meta
        by_tail = self._by_tail
        for end in range(WINDOW, len(text) + 1):
            candidates = by_tail.get(text[end - WINDOW : end])
            if candidates:
                for token in candidates:
                    if token not in found and text.startswith(token, end - len(token)):
                        found[token] = self.tokens[token]
        return [
            Finding(kind, origin, where, f"sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}")
            for value, (kind, origin) in found.items()
        ]


class LogCollector(logging.Handler):
    """Keeps the text of every record it sees (once, even when attached to several loggers)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[tuple[str, str]] = []  # (where, text)
        self._seen: weakref.WeakSet[logging.LogRecord] = weakref.WeakSet()  # ids get reused; records don't

    def emit(self, record: logging.LogRecord) -> None:
        if record in self._seen:
            return
        self._seen.add(record)
        self.lines.append((f"logger {record.name!r} ({record.levelname})", record_text(record)))

    def add_text(self, text: str, where: str) -> None:
        """Output of a sub-process (a server's log), checked like the records of this one."""
        for line in text.splitlines():
            self.lines.append((where, line))

    def check(self, registry: LeakRegistry) -> list[Finding]:
        findings: list[Finding] = []
        for where, text in self.lines:
            findings.extend(registry.scan(text, where))
        return findings


class Hygiene:
    """The plugin: the registry, the collector, and the hooks that feed them."""

    def __init__(self) -> None:
        self.registry = LeakRegistry()
        self.collector = LogCollector()
        self.hooks: list[str] = []  # which keyfob functions are wrapped (the self-test checks them)
        self._undo: list[Callable[[], None]] = []
        self._saved_level: int | None = None

    # -- feeding the registry ------------------------------------------------------------------------
    def add_token(self, value: object, origin: str = "test") -> None:
        self.registry.add_token(value, origin)

    def add_secret(self, value: object, origin: str = "test", kind: str = "secret") -> None:
        self.registry.add_secret(value, origin, kind)

    def add_text(self, text: str, where: str) -> None:
        self.collector.add_text(text, where)

    def _cookies(self, cookies: Iterable[Any], origin: str) -> None:
        for c in cookies:
            if getattr(c, "value", ""):
                self.add_token(c.value, f"{origin} cookie {c.name}")

    def _issued(self, issued: Any, origin: str) -> None:
        self.add_token(getattr(issued, "access_token", None), f"{origin} access_token")
        self.add_token(getattr(issued, "refresh_token", None), f"{origin} refresh_token")
        self._cookies(getattr(issued, "cookies", ()), origin)

    def _wrap(self, owner: Any, name: str, make: Callable[[Any], Any], label: str) -> None:
        original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if original is None:
            return
        setattr(owner, name, make(original))
        self.hooks.append(label)
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        from keyfob import engine, settings
        from keyfob.demo import _users
        from keyfob.tokens import _authjs, _jws, _keyring
        from keyfob.web import _cookies, csrf

        h = self

        def secrets_fn(origin: str) -> Callable[[Any], Any]:
            def make(fn: Callable[..., tuple[str, ...]]) -> Callable[..., tuple[str, ...]]:
                @functools.wraps(fn)
                def wrapper(secrets: Any) -> tuple[str, ...]:
                    out = fn(secrets)
                    for s in out:
                        h.add_secret(s, origin)
                    return out

                return wrapper

            return make

        def post_init(fn: Callable[[Any], None]) -> Callable[[Any], None]:
            @functools.wraps(fn)
            def wrapper(self: Any) -> None:
                fn(self)
                for s in getattr(self, "secrets", ()):
                    h.add_secret(s, "Settings.secrets")

            return wrapper

        def returns_token(origin: str) -> Callable[[Any], Any]:
            def make(fn: Callable[..., str]) -> Callable[..., str]:
                @functools.wraps(fn)
                def wrapper(*args: Any, **kwargs: Any) -> str:
                    out = fn(*args, **kwargs)
                    h.add_token(out, origin)
                    return out

                return wrapper

            return make

        def cookie_write(fn: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
            @functools.wraps(fn)
            def wrapper(self: Any, value: str, *args: Any, **kwargs: Any) -> list[Any]:
                out = fn(self, value, *args, **kwargs)
                h.add_token(value, f"cookie {self.name}")
                h._cookies(out, "CookieSpec.write")
                return out

            return wrapper

        def csrf_issue(fn: Callable[..., tuple[str, list[Any]]]) -> Callable[..., tuple[str, list[Any]]]:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> tuple[str, list[Any]]:
                token, cookies = fn(*args, **kwargs)
                h.add_token(token, "CSRFProtect.issue")
                return token, cookies

            return wrapper

        def issues(origin: str) -> Callable[[Any], Any]:
            def make(fn: Callable[..., Any]) -> Callable[..., Any]:
                @functools.wraps(fn)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    out = await fn(*args, **kwargs)
                    if hasattr(out, "access_token"):
                        h._issued(out, origin)
                    else:  # AuthResult: rolling / refreshed cookies
                        h._cookies(getattr(out, "cookies", ()), origin)
                    return out

                return wrapper

            return make

        def password(origin: str, index: int) -> Callable[[Any], Any]:
            def make(fn: Callable[..., Any]) -> Callable[..., Any]:
                @functools.wraps(fn)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    if len(args) > index:
                        h.add_secret(args[index], origin, kind="password")
                    return await fn(*args, **kwargs)

                return wrapper

            return make

        self._wrap(settings.Settings, "__post_init__", post_init, "Settings.__post_init__")
        self._wrap(_authjs, "_secrets_tuple", secrets_fn("JWE secrets"), "tokens._authjs._secrets_tuple")
        self._wrap(_keyring, "_secrets", secrets_fn("KeyRing secrets"), "tokens._keyring._secrets")
        self._wrap(_authjs.JWECodec, "encode", returns_token("JWECodec.encode"), "JWECodec.encode")
        self._wrap(_jws.JWSSigner, "sign", returns_token("JWSSigner.sign"), "JWSSigner.sign")
        self._wrap(_cookies.CookieSpec, "write", cookie_write, "CookieSpec.write")
        self._wrap(csrf.CSRFProtect, "issue", csrf_issue, "CSRFProtect.issue")
        for name in ("create", "refresh", "rotate", "authenticate", "authenticate_token"):
            self._wrap(engine.Keyfob, name, issues(f"Keyfob.{name}"), f"Keyfob.{name}")
        self._wrap(_users.Users, "add", password("Users.add", 2), "Users.add")
        self._wrap(_users.Users, "authenticate", password("Users.authenticate", 2), "Users.authenticate")
        self._wrap(_users.Users, "set_password", password("Users.set_password", 2), "Users.set_password")

        root, kf = logging.getLogger(), logging.getLogger("keyfob")
        root.addHandler(self.collector)
        kf.addHandler(self.collector)
        self._saved_level = kf.level
        kf.setLevel(logging.DEBUG)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
        root, kf = logging.getLogger(), logging.getLogger("keyfob")
        root.removeHandler(self.collector)
        kf.removeHandler(self.collector)
        if self._saved_level is not None:
            kf.setLevel(self._saved_level)

    def add_module_constants(self) -> None:
        for name, module in list(sys.modules.items()):
            if not (name == "tests" or name.startswith("tests.")) or module is None:
                continue
            for attr, value in list(vars(module).items()):
                if attr.isupper() and _CONSTANT_NAME.search(attr):
                    kind = "password" if "PASS" in attr else "secret"
                    self.add_secret(value, f"{name}.{attr}", kind)

    # -- pytest hooks ---------------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.add_module_constants()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.add_module_constants()
        self.findings = self.collector.check(self.registry)
        if self.findings and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        findings: list[Finding] = getattr(self, "findings", [])
        lines, values = len(self.collector.lines), len(self.registry)
        if not findings:
            terminalreporter.write_line(
                f"log hygiene: {lines} log lines checked against {values} secrets/tokens/passwords: no leak"
            )
            return
        terminalreporter.section("log hygiene: secret or token in a log line", sep="=", red=True)
        shown: set[tuple[str, str, str]] = set()
        for f in findings:
            key = (f.kind, f.origin, f.where)
            if key not in shown:
                shown.add(key)
                terminalreporter.write_line(f"{f.kind} {f.preview} from {f.origin} was logged by {f.where}")
        terminalreporter.write_line(
            f"{len(findings)} leak(s) in {lines} log lines: log a hash or the session id instead "
            "(ASVS 16.2.5), never the value"
        )


_PLUGIN: Hygiene | None = None


def hygiene() -> Hygiene:
    """The running plugin (a detached one when the suite runs without it, so callers need no check)."""
    global _PLUGIN
    if _PLUGIN is None:
        _PLUGIN = Hygiene()
    return _PLUGIN


def pytest_configure(config: pytest.Config) -> None:
    plugin = hygiene()
    plugin.install()
    config.pluginmanager.register(plugin, "keyfob-log-hygiene")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin("keyfob-log-hygiene")
    if isinstance(plugin, Hygiene):
        plugin.uninstall()
