"""The demo app: sign up, sign in ("keep me signed in" or not), see your session, manage your devices,
change your password (after re-entering it when the sign-in is older than 10 minutes: step-up); an admin
console (the first account is the admin) with every user's sessions, role changes that reach the user's
next request without a sign-out, impersonation ("acting as X — stop"), and keyfob's event log; a page
that compares the three strategies with the numbers of a ``keyfob bench`` run.

Server-rendered pages (Jinja2, autoescaped), keyfob installed with ``keyfob.fastapi.install``:
its middleware authenticates every request and checks CSRF (Origin + the double-submit token
each form carries as ``csrf_token``) on every POST. keyfob's JSON errors on page routes (a failed CSRF
check, a store outage) are turned into HTML pages that say what happened and what to do next.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import stat
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._session import RequestMeta, Session
from ..engine import Keyfob
from ..errors import ImpersonationRefused, InvalidToken, StepUpRequired
from ..fastapi import install
from ..settings import STRATEGIES
from ..starlette import csrf_token, keyfob_request, require_session, sign_in, sign_out
from ..strategies._lifetimes import touch_interval
from ._compare import GUARANTEES, default_results_path, load_run
from ._events import ADMIN_KINDS, ENGINE_KINDS, EventLog
from ._users import MAX_PASSWORD, MIN_PASSWORD, ROLES, EmailTaken, User, Users

__all__ = ["SECURITY_HEADERS", "cookie_names", "create_app"]

HERE = Path(__file__).parent
SECRET_FILE = "keyfob-secret"
USERS_FILE = "keyfob-demo.db"
SESSIONS_FILE = "keyfob.db"

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}

# ?m=<key> → a fixed message (never reflect text from the URL)
NOTICES = {
    "signed-out": "You are signed out.",
    "session-ended": "Your session ended. Sign in again to continue.",
    # why a session that this browser presented was refused (AuthResult.reason), said plainly
    "ended-revoked": "Your session ended: it was revoked — signed out from another device, by a password "
    "change, or by an administrator. Sign in again to continue; if you did not expect this, change your "
    "password.",
    "ended-expired": "Your session ended: it expired. Sign in again to continue.",
    "ended-idle": "Your session ended: it expired after a period without activity. "
    "Sign in again to continue.",
    "ended-reuse": "Your session ended: this browser's refresh token was used a second time (a copy of it "
    "may have been stolen), so the whole session was revoked as a precaution. Sign in again, and change "
    "your password if you did not expect this.",
    "ended-invalid": "Your session ended: this browser's session is no longer recognised (it was signed out "
    "from another device or by an administrator, or the demo's secret changed). Sign in again to continue.",
    "revoked": "That device was signed out.",
    "others": "Every other device was signed out.",
    "password": "Password changed. Every other device was signed out; this browser got a fresh session.",
    "welcome": "Welcome! Your account is ready and you are signed in.",
    "not-found": "That session is not one of yours (or it is already gone).",
    "need-signin": "Sign in to see that page.",
    "kicked": "The user was signed out everywhere.",
    "bumped": "The user's token version was raised: every token issued before now is refused.",
    "no-user": "There is no such user.",
    "role": "The role was changed: the user's sessions show it at their next request, without a sign-out.",
    "own-role": "You cannot change your own role (ask another admin).",
    "bad-role": "That is not a role this demo knows.",
    "confirmed": "Password confirmed: you can change your password now.",
    "imp-self": "You cannot impersonate yourself.",
    "imp-admin": "That user is an admin: impersonating an admin needs explicit permission. Tick the box "
    "that says you have it, and try again.",
    "imp-nested": "This session is already an impersonation: stop it first.",
    "imp-stopped": "You stopped acting as the user: this is your own session again.",
    "imp-ended": "The impersonation ended, and your own session had ended meanwhile. Sign in again.",
    "not-imp": "This session is not an impersonation: there is nothing to stop.",
}

# how a refused session's error code maps onto the notice above
_ENDED = {
    "session_revoked": "ended-revoked",
    "token_reuse_detected": "ended-reuse",
    "invalid_token": "ended-invalid",
    "session_expired": "ended-expired",
}

# keyfob's JSON errors on page routes become these pages: (status, title, what to do next)
_ERROR_PAGES: dict[str, tuple[str, str]] = {
    "csrf_failed": (
        "This form could not be accepted",
        "Nothing was changed. Reload the page the form is on and submit it again. This happens when a "
        "page was opened before the demo restarted or in another demo's tab, when the browser blocks "
        "cookies, or when another site tried to submit the form for you.",
    ),
    "store_unavailable": (
        "The session store is not answering",
        "keyfob fails closed: without its store it will not guess who you are, and nothing was changed. "
        "Try again in a moment. If you run this demo, check that the store is up (the --store URL or "
        "KEYFOB_STORE).",
    ),
}
_API_PREFIXES = ("/auth/", "/.well-known/", "/metrics", "/static/")


def cookie_names(port: int | None) -> dict[str, str]:
    """The demo's cookie names: ``keyfob-<port>.session-token`` (and refresh) when it serves on ``port``.

    Browsers scope cookies by host, not by port (RFC 6265 §8.5): two demos on 127.0.0.1 share one
    cookie jar, and with the same names each sign-in overwrites the other's session. The port is the
    one thing two running demos cannot share, so it goes into the name; the CSRF cookie follows the
    session cookie's name. Without a port (tests, embedding) the library defaults stay.
    """
    if port is None:
        return {}
    return {
        "cookie_name": f"keyfob-{port}.session-token",
        "refresh_cookie_name": f"keyfob-{port}.refresh-token",
    }


class FriendlyErrors:
    """Pure ASGI middleware: keyfob's JSON error answers on page routes become HTML pages.

    keyfob's middleware answers a failed CSRF check (403) or a store outage (503) itself, as
    ``{"error": code, "detail": message}``, before any endpoint runs. A person who submitted a form
    should read what happened and what to do next instead; API routes (``/auth/...``) keep the JSON.
    """

    def __init__(self, app: ASGIApp, render: Callable[[str, str, str], str]) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(_API_PREFIXES):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = b""

        async def send_friendly(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if message["status"] in (403, 503) and headers.get(b"content-type", b"").startswith(
                    b"application/json"
                ):
                    held = message  # keyfob's own error: hold it until the body says which
                    return
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body += message.get("body", b"")
            if message.get("more_body", False):
                return
            start, page = held, self._page(body, scope)
            held = None
            if page is None:
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            encoded = page.encode("utf-8")
            kept = [(k, v) for k, v in start.get("headers", [])
                    if k.lower() not in (b"content-type", b"content-length", b"cache-control")]
            kept += [(b"content-type", b"text/html; charset=utf-8"),
                     (b"content-length", str(len(encoded)).encode()), (b"cache-control", b"no-store")]
            await send({**start, "headers": kept})
            await send({"type": "http.response.body", "body": encoded})

        await self.app(scope, receive, send_friendly)

    def _page(self, body: bytes, scope: Scope) -> str | None:
        """The HTML page for keyfob's JSON error ``body``, or None to pass the answer on unchanged."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        code = data.get("error") if isinstance(data, dict) else None
        if not isinstance(code, str) or code not in _ERROR_PAGES:
            return None
        detail = data.get("detail")
        back = scope.get("path", "/") if scope.get("path") in ("/signin", "/signup", "/password") else "/"
        return self.render(code, detail if isinstance(detail, str) else "", back)


class SecurityHeaders:
    """Pure ASGI middleware: adds CSP, X-Frame-Options, Referrer-Policy and nosniff to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def load_or_create_secret(data_dir: Path, echo: Callable[[str], None]) -> str:
    """The demo's secret from ``<data_dir>/keyfob-secret``, generated (mode 0600) the first time."""
    path = data_dir / SECRET_FILE
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            echo(f"warning: {path} is readable by other users; run: chmod 600 {path}")
        return value
    value = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    echo(
        f"no KEYFOB_SECRET set: generated a secret and saved it to {path} (mode 0600); "
        "set KEYFOB_SECRET to use your own"
    )
    return value


def _stderr(msg: str) -> None:
    print(f"keyfob demo: {msg}", file=sys.stderr)


def _when(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "—"
    now = datetime.now(UTC).timestamp() if now is None else now
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = ts - now
    s = abs(int(delta))
    if s < 60:
        rel = f"{s} s"
    elif s < 3600:
        rel = f"{s // 60} min"
    elif s < 86400:
        rel = f"{s // 3600} h {s % 3600 // 60} min"
    else:
        rel = f"{s // 86400} d {s % 86400 // 3600} h"
    return f"{stamp} ({'in ' + rel if delta > 0 else rel + ' ago'})"


def _span(seconds: float) -> str:
    """A duration in the largest whole unit: ``2592000`` → ``"30 days"``, ``600`` → ``"10 min"``."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 and unit != 'min' else ''}"
    return f"{seconds:g} s"


def mount_metrics(app: FastAPI, fob: Keyfob) -> None:
    """``/metrics``: keyfob's Prometheus metrics for this app's engine (its own registry, so several
    apps in one process count apart), or a page that says how to turn them on."""
    try:
        from prometheus_client import CollectorRegistry

        from ..metrics import instrument
    except ModuleNotFoundError as exc:
        missing = exc.name or "prometheus_client"

        async def metrics_off() -> Response:
            return PlainTextResponse(
                f"metrics are off: {missing} is not installed; pip install 'keyfob[metrics]'\n",
                status_code=404, headers={"cache-control": "no-store"},
            )

        app.add_api_route("/metrics", metrics_off, methods=["GET"], include_in_schema=False)
        return
    instrumentation = instrument(fob, CollectorRegistry())
    app.state.metrics = instrumentation
    app.add_route("/metrics", instrumentation.endpoint, methods=["GET"], include_in_schema=False)


def _meta(request: Request) -> RequestMeta:
    """The request's device, as the session list shows it (IP address and user agent)."""
    ua = request.headers.get("user-agent")
    return RequestMeta(ip=request.client.host if request.client else None,
                       user_agent=ua[:512] if ua else None)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def create_app(
    strategy: str = "hybrid",
    store: str | None = None,
    data_dir: str | Path = ".keyfob-demo",
    secret: str | Sequence[str] | None = None,
    *,
    password_hasher: PasswordHasher | None = None,
    echo: Callable[[str], None] = _stderr,
    port: int | None = None,
    bench_results: str | Path | None = None,
    event_limit: int = 5000,
    metrics: bool = True,
    step_up_age: float = 600,
    impersonation_ttl: float = 3600,
    **settings: Any,
) -> FastAPI:
    """Build the demo app.

    Users and the event log live in ``<data_dir>/keyfob-demo.db``; sessions in ``store`` (default the
    SQLite file ``<data_dir>/keyfob.db``). The secret is ``secret``, else ``KEYFOB_SECRET``, else one
    generated once and kept in ``<data_dir>/keyfob-secret``. ``port`` (the CLI passes ``--port``) names
    the cookies after it, so demos side by side on one host keep apart (:func:`cookie_names`).
    ``bench_results`` is the ``keyfob bench --json`` output the compare page reads (default the run
    bundled with the package, :func:`._compare.default_results_path`); ``event_limit`` bounds the
    event log. With ``metrics``
    (and the ``metrics`` extra installed) the engine is instrumented with :mod:`keyfob.metrics` on a
    registry of its own and ``/metrics`` serves it. ``step_up_age`` (seconds, default 10 minutes) is how
    recent the sign-in must be to change the password (older: re-enter it first);
    ``impersonation_ttl`` bounds an admin's impersonation. Other keyword arguments are keyfob settings
    (``refresh_grace=1``, ``access_ttl=60``...) and engine options (``clock=``).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        **cookie_names(port),
        **settings,
        "strategy": strategy,
        "store": store or f"sqlite:///{(data / SESSIONS_FILE).resolve()}",
    }
    if secret is not None:
        overrides["secret"] = secret
    elif not (os.environ.get("KEYFOB_SECRET") or os.environ.get("AUTH_SECRET")):
        overrides["secret"] = load_or_create_secret(data, echo)
    fob = Keyfob.from_env(**overrides)
    users = Users(data / USERS_FILE, password_hasher)
    events = EventLog(data / USERS_FILE, limit=event_limit)
    fob.on_event(events.record)
    results_path = Path(bench_results) if bench_results is not None else default_results_path()
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )
    store_label = "memory" if fob.settings.store.startswith("memory") else fob.settings.store.split("://")[0]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await fob.start()  # create the tables now: fail at startup, not at the first sign-in

        async def flush_events() -> None:
            while True:
                await asyncio.sleep(1.0)
                events.flush()

        flusher = asyncio.create_task(flush_events())
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            events.flush()
            await fob.close()

    app = FastAPI(title="keyfob demo", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install(app, fob)

    def error_page(code: str, detail: str, back: str) -> str:
        title, next_step = _ERROR_PAGES[code]
        return templates.get_template("error.html").render(
            title=title, detail=detail, next_step=next_step, code=code, back=back, bare=True,
            **page_context(None),
        )

    if metrics:
        mount_metrics(app, fob)
    app.add_middleware(FriendlyErrors, render=error_page)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.keyfob = fob
    app.state.users = users
    app.state.events = events

    # -- helpers ---------------------------------------------------------------------------------------
    def page_context(session: Session | None) -> dict[str, Any]:
        impersonator = None
        if session is not None and session.impersonated_by is not None:
            admin_user = users.by_id(session.impersonated_by)
            impersonator = admin_user.email if admin_user is not None else session.impersonated_by
        return {
            "session": session,
            "impersonator": impersonator,
            "acting_as": email_of(session) if session is not None else None,
            "is_admin": session is not None and session.role == "admin",
            "strategy": fob.settings.strategy,
            "users_db": USERS_FILE,
            "store": store_label,
            "min_password": MIN_PASSWORD,
            "when": _when,
        }

    def render(request: Request, name: str, *, status: int = 200, **ctx: Any) -> HTMLResponse:
        notice = NOTICES.get(request.query_params.get("m", ""))
        html = templates.get_template(name).render(  # csrf_token: bound to this session; cookie set if new
            csrf_token=csrf_token(request), notice=notice, **page_context(request.state.session), **ctx
        )
        # no-store: nothing a page shows is kept in the browser's cache, so Back after sign-out is empty
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    def form_error(request: Request, name: str, status: int, email: str, error: str, *,
                   link: tuple[str, str] | None = None) -> HTMLResponse:
        """Re-render a form with the email kept and a message that says what to do."""
        return render(request, name, status=status, email=email, error=error, error_link=link)

    def redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})

    def need_session(request: Request) -> Session | RedirectResponse:
        session: Session | None = request.state.session
        if session is not None:
            return session
        result = keyfob_request(request).result
        reason = getattr(result, "reason", None)
        if reason is None:
            return redirect("/signin?m=need-signin")
        key = _ENDED.get(reason, "session-ended")
        if key == "ended-expired" and getattr(getattr(result, "error", None), "reason", None) == "idle":
            key = "ended-idle"
        return redirect(f"/signin?m={key}")

    def need_admin(request: Request) -> tuple[Session, User] | Response:
        """The signed-in admin, or a redirect to sign in, or the 403 page."""
        session = need_session(request)
        if isinstance(session, Response):
            return session
        user = users.by_id(session.user_id)
        if user is None or not user.is_admin:  # the users table decides, not the token's claim
            return render(request, "forbidden.html", status=403, email=email_of(session))
        return session, user

    def need_admin_over(request: Request, uid: str) -> tuple[Session, User, User] | Response:
        """The signed-in admin (session, user) and the user ``uid`` they act on; else a redirect to
        sign in, the 403 page, or back to the admin page when there is no such user."""
        who = need_admin(request)
        if isinstance(who, Response):
            return who
        target = users.by_id(uid)
        if target is None:
            return redirect("/admin?m=no-user")
        return (*who, target)

    def email_of(session: Session) -> str:
        value = session.data.get("email")
        return value if isinstance(value, str) else session.user_id

    def session_data(user: User) -> dict[str, str]:
        return {"email": user.email, "role": user.role}

    def page(path: str) -> Callable[[Any], Any]:
        """A GET page that also answers HEAD (FastAPI's ``@app.get`` alone answers HEAD with 405)."""
        return app.api_route(path, methods=["GET", "HEAD"], include_in_schema=False)

    # -- pages -------------------------------------------------------------------------------------------
    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon() -> Response:
        return FileResponse(HERE / "static" / "favicon.ico", media_type="image/x-icon",
                            headers={"cache-control": "public, max-age=86400"})

    @page("/")
    async def home(request: Request) -> Response:
        return redirect("/dashboard" if request.state.session else "/signin")

    @page("/signin")
    async def signin_page(request: Request) -> Response:
        if request.state.session is not None:
            return redirect("/dashboard")
        return render(request, "signin.html")

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        form = await request.form()
        email, password = _field(form, "email"), _field(form, "password")
        if not email or not password or len(password) > MAX_PASSWORD:
            return form_error(request, "signin.html", 400, email, "Enter your email and your password.")
        user = await users.authenticate(email, password)
        if user is None:
            return form_error(
                request, "signin.html", 401, email, "Wrong email or password. Check them and try again, or",
                link=("/signup", "create an account."),
            )
        # "Keep me signed in" unticked: a browser-session cookie (no Max-Age), gone when the browser closes
        await sign_in(request, user.id, session_data(user), remember=_field(form, "remember") == "on",
                      amr=["pwd"])
        return redirect("/dashboard")

    @page("/signup")
    async def signup_page(request: Request) -> Response:
        if request.state.session is not None:
            return redirect("/dashboard")
        return render(request, "signup.html")

    @app.post("/signup", include_in_schema=False)
    async def signup(request: Request) -> Response:
        form = await request.form()
        email, password = _field(form, "email").strip(), _field(form, "password")
        if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
            return form_error(
                request, "signup.html", 400, email,
                "That does not look like an email address; check it and try again.",
            )
        if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
            return form_error(
                request, "signup.html", 400, email,
                f"Choose a password of at least {MIN_PASSWORD} characters.",
            )
        try:
            user = await users.add(email, password)
        except EmailTaken:
            return form_error(
                request, "signup.html", 409, email, "That email is taken —",
                link=("/signin", "sign in instead."),
            )
        await sign_in(request, user.id, session_data(user), amr=["pwd"])
        return redirect("/dashboard?m=welcome")

    @page("/dashboard")
    async def dashboard(request: Request) -> Response:
        session = need_session(request)
        if isinstance(session, Response):
            return session
        return render(
            request,
            "dashboard.html",
            email=email_of(session),
            facts=await session_facts(session),
            cookies=cookie_list(request),
            strategy_note=STRATEGY_NOTES[fob.settings.strategy],
        )

    async def session_facts(session: Session) -> list[tuple[str, str, str]]:
        s = fob.settings
        facts = [
            ("User", f"{email_of(session)} (id {session.user_id})", ""),
            ("Role", session.role or "user", "the first account that signed up is the demo's admin"),
            ("Strategy", s.strategy, ""),
            ("Session id", session.id, "public handle: safe to show and log, useless as a credential"),
            ("Signed in", _when(session.authenticated_at), "when you last proved your password"),
            ("Session created", _when(session.created_at), ""),
            ("Remembered", "yes" if session.remembered else "no: a browser-session cookie",
             "kept across browser restarts" if session.remembered
             else "without Max-Age: the browser drops it when it closes"),
        ]
        if session.impersonated_by is not None:
            facts.append(("Impersonated by", page_context(session)["impersonator"] or "",
                          "an admin is acting as this user (bounded; in the event log)"))
        if s.strategy == "jwt":
            iat = session.claims.get("iat")
            issued = float(iat) if isinstance(iat, int | float) else session.created_at
            facts += [
                ("Cookie issued", _when(issued), "the encrypted cookie holds the whole session"),
                (
                    "Rolls",
                    _when(issued + touch_interval(s)),
                    "on the first request after this the cookie is re-issued "
                    f"(update_age {_span(s.update_age)})",
                ),
                (
                    "Expires",
                    _when(session.expires_at),
                    f"unless it rolls first: max_age {_span(s.max_age)} of inactivity",
                ),
            ]
        elif s.strategy == "database":
            info = await fob.get_session(session.id)
            if info is not None:
                facts += [
                    ("Last seen", _when(info.last_seen_at), "written at most once per update_age"),
                    (
                        "Extends",
                        _when(info.last_seen_at + touch_interval(s)),
                        "the first request after this pushes the expiry out again",
                    ),
                ]
            facts.append(
                ("Expires", _when(session.expires_at), f"max_age {_span(s.max_age)} after the last extension")
            )
        else:
            hybrid = fob.hybrid
            margin = hybrid.refresh_margin if hybrid is not None else 60.0
            info = await fob.get_session(session.id)
            facts += [
                (
                    "Access token expires",
                    _when(session.expires_at),
                    f"a signed JWT checked without a store read; lives {_span(s.access_ttl)}",
                ),
                (
                    "Refreshes",
                    _when(session.expires_at - margin),
                    "the first request after this rotates the refresh token and mints a new access token",
                ),
            ]
            if info is not None:
                facts += [
                    ("Refresh token last used", _when(info.last_seen_at), ""),
                    (
                        "Session expires",
                        _when(info.expires_at),
                        f"max_age {_span(s.max_age)} after the last refresh",
                    ),
                ]
        return facts

    def cookie_list(request: Request) -> list[tuple[str, int]]:
        """keyfob's cookies in this request: names and sizes only, never values."""
        cookies = keyfob_request(request).cookies
        out = []
        for name, value in sorted(cookies.items()):
            if name.removeprefix("__Host-").removeprefix("__Secure-").startswith("keyfob"):
                out.append((name, len(value)))
        return out

    @page("/devices")
    async def devices(request: Request) -> Response:
        session = need_session(request)
        if isinstance(session, Response):
            return session
        items = (
            []
            if fob.settings.strategy == "jwt"
            else await fob.list_sessions(session.user_id, current=session.id)
        )
        return render(request, "devices.html", devices=items, emails={u.id: u.email for u in users.all()})

    @app.post("/devices/revoke-others", include_in_schema=False)
    async def revoke_others(request: Request) -> Response:
        session = need_session(request)
        if isinstance(session, Response):
            return session
        req = keyfob_request(request)
        _, reissued = await fob.revoke_others(req.cookies, secure=req.secure)
        if reissued is not None:  # jwt: this browser's cookie is re-issued under the new version
            req.replaced(reissued)
        return redirect("/devices?m=others")

    @app.post("/devices/{sid}/revoke", include_in_schema=False)
    async def revoke_device(request: Request, sid: str) -> Response:
        session = need_session(request)
        if isinstance(session, Response):
            return session
        if sid == session.id:
            await sign_out(request)
            return signed_out()
        info = await fob.get_session(sid)
        if info is None or info.user_id != session.user_id:
            return redirect("/devices?m=not-found")
        await fob.revoke(sid)
        return redirect("/devices?m=revoked")

    async def step_up(request: Request) -> Response | None:
        """The re-authentication page when the sign-in is older than ``step_up_age`` (else None)."""
        try:
            await require_session(request, fresh=step_up_age)
        except StepUpRequired:
            return render(request, "reauth.html", status=403, email=email_of(request.state.session),
                          minutes=_span(step_up_age))
        return None

    async def own_password(request: Request, *, fresh: bool) -> Session | Response:
        """The session that may change its user's password: signed in, not an admin acting as the
        user, and (``fresh``) signed in within ``step_up_age``; else the page that says why not."""
        session = need_session(request)
        if isinstance(session, Response):
            return session
        if session.impersonated_by is not None:
            return render(request, "forbidden.html", status=403, email=email_of(session),
                          reason="An admin acting as a user cannot change the user's password. Stop acting "
                          "as the user first.")
        stale = await step_up(request) if fresh else None
        return session if stale is None else stale

    @page("/password")
    async def password_page(request: Request) -> Response:
        session = await own_password(request, fresh=True)
        if isinstance(session, Response):
            return session
        return render(request, "password.html", email=email_of(session))

    @app.post("/password/confirm", include_in_schema=False)
    async def confirm_password(request: Request) -> Response:
        """Step-up: the user re-entered their password; ``fob.elevate`` records it (a new token)."""
        session = await own_password(request, fresh=False)
        if isinstance(session, Response):
            return session
        form = await request.form()
        password = _field(form, "password")
        user = users.by_id(session.user_id)
        if (user is None or not password or len(password) > MAX_PASSWORD
                or await users.authenticate(user.email, password) is None):
            return render(request, "reauth.html", status=400, email=email_of(session),
                          minutes=_span(step_up_age), error="That is not your password. Try again.")
        req = keyfob_request(request)
        elevated = await fob.elevate(session, "pwd", cookies=req.cookies, secure=req.secure,
                                     meta=_meta(request))
        req.replaced(elevated)
        request.state.session = elevated.session
        return redirect("/password?m=confirmed")

    @app.post("/password", include_in_schema=False)
    async def change_password(request: Request) -> Response:
        session = await own_password(request, fresh=True)
        if isinstance(session, Response):
            return session
        form = await request.form()
        current, new = _field(form, "current_password"), _field(form, "new_password")
        user = users.by_id(session.user_id)
        if user is None or await users.authenticate(user.email, current) is None:
            return render(
                request,
                "password.html",
                status=400,
                email=email_of(session),
                error="That is not your current password. Try again.",
            )
        if len(new) < MIN_PASSWORD or len(new) > MAX_PASSWORD:
            return render(
                request,
                "password.html",
                status=400,
                email=email_of(session),
                error=f"Choose a new password of at least {MIN_PASSWORD} characters.",
            )
        await users.set_password(user.id, new)
        # Every token of this user dies (jwt cookies and hybrid access tokens carry the version;
        # stored sessions are deleted); this browser gets a fresh session id.
        await fob.bump_user_version(user.id)
        await sign_in(request, user.id, session_data(user), remember=session.remembered, amr=["pwd"])
        return redirect("/dashboard?m=password")

    def signed_out() -> RedirectResponse:
        response = redirect("/signin?m=signed-out")
        # Back after sign-out must not show a private page: drop this origin's HTTP cache (and the
        # back/forward cache) as well as relying on no-store.
        response.headers["clear-site-data"] = '"cache"'
        return response

    @app.post("/signout", include_in_schema=False)
    async def signout(request: Request) -> Response:
        await sign_out(request)
        return signed_out()

    # -- compare -----------------------------------------------------------------------------------------
    @page("/compare")
    async def compare(request: Request) -> Response:
        run = load_run(results_path)
        return render(
            request,
            "compare.html",
            run=None if isinstance(run, str) else run,
            missing=run if isinstance(run, str) else None,
            guarantees=GUARANTEES,
        )

    # -- admin -------------------------------------------------------------------------------------------
    @page("/admin")
    async def admin(request: Request) -> Response:
        who = need_admin(request)
        if isinstance(who, Response):
            return who
        session, _ = who
        rows = []
        everyone = users.all()
        for user in everyone:
            sessions = [] if fob.settings.strategy == "jwt" else await fob.list_sessions(
                user.id, current=session.id
            )
            rows.append((user, sessions))
        return render(request, "admin.html", rows=rows, recent=events.query(limit=15),
                      emails={u.id: u.email for u in everyone}, roles=ROLES, me=session.user_id,
                      impersonation_minutes=_span(impersonation_ttl))

    @page("/admin/events")
    async def admin_events(request: Request) -> Response:
        who = need_admin(request)
        if isinstance(who, Response):
            return who
        user_filter = request.query_params.get("user", "")
        kind_filter = request.query_params.get("kind", "")
        if kind_filter not in (*ENGINE_KINDS, *ADMIN_KINDS):
            kind_filter = ""
        everyone = users.all()
        return render(
            request,
            "events.html",
            events=events.query(user_id=user_filter or None, kind=kind_filter or None, limit=500),
            users=everyone,
            emails={u.id: u.email for u in everyone},
            kinds=(*ENGINE_KINDS, *ADMIN_KINDS),
            user_filter=user_filter,
            kind_filter=kind_filter,
        )

    @app.post("/admin/users/{uid}/kick", include_in_schema=False)
    async def admin_kick(request: Request, uid: str) -> Response:
        who = need_admin_over(request, uid)
        if isinstance(who, Response):
            return who
        _, admin_user, _ = who
        revoked = await fob.revoke_user(uid)  # jwt: the user's version is raised (-1: "all")
        events.admin("admin.kicked", actor=admin_user.id, user_id=uid, at=fob.clock(),
                     detail={"sessions": "all" if revoked < 0 else revoked})
        return redirect("/admin?m=kicked")

    @app.post("/admin/users/{uid}/bump", include_in_schema=False)
    async def admin_bump(request: Request, uid: str) -> Response:
        who = need_admin_over(request, uid)
        if isinstance(who, Response):
            return who
        _, admin_user, _ = who
        version = await fob.bump_user_version(uid)
        events.admin("admin.version_bumped", actor=admin_user.id, user_id=uid, at=fob.clock(),
                     detail={"version": version})
        return redirect("/admin?m=bumped")

    @app.post("/admin/users/{uid}/role", include_in_schema=False)
    async def admin_role(request: Request, uid: str) -> Response:
        """A role change that the user's sessions show at their next request, with no sign-out
        (``fob.update_user_sessions``)."""
        who = need_admin_over(request, uid)
        if isinstance(who, Response):
            return who
        _, admin_user, target = who
        role = _field(await request.form(), "role")
        if uid == admin_user.id:
            return redirect("/admin?m=own-role")
        if role not in ROLES:
            return redirect("/admin?m=bad-role")
        before = target.role
        users.set_role(uid, role)
        changed = await fob.update_user_sessions(uid, {"role": role})  # jwt: -1, every token of the user
        events.admin("admin.role_changed", actor=admin_user.id, user_id=uid, at=fob.clock(),
                     detail={"from": before, "to": role, "sessions": "all" if changed < 0 else changed})
        return redirect("/admin?m=role")

    @app.post("/admin/users/{uid}/impersonate", include_in_schema=False)
    async def admin_impersonate(request: Request, uid: str) -> Response:
        """Act as the user (``fob.impersonate``): a bounded session of theirs carrying the admin's id;
        this browser's own admin session stays, and "stop" returns to it."""
        who = need_admin_over(request, uid)
        if isinstance(who, Response):
            return who
        session, _, target = who
        form = await request.form()
        if uid == session.user_id:
            return redirect("/admin?m=imp-self")
        req = keyfob_request(request)
        try:
            issued = await fob.impersonate(
                session, uid, ttl=impersonation_ttl, data=session_data(target), cookies=req.cookies,
                allow_admin=_field(form, "allow_admin") == "on", meta=_meta(request), secure=req.secure)
        except ImpersonationRefused:
            return redirect("/admin?m=" + ("imp-nested" if session.impersonated_by else "imp-admin"))
        req.signed_in(issued)
        request.state.session = issued.session
        return redirect("/dashboard")

    @app.post("/impersonation/stop", include_in_schema=False)
    async def stop_impersonating(request: Request) -> Response:
        """End the impersonation; the admin's own session comes back (``fob.stop_impersonating``)."""
        session = need_session(request)
        if isinstance(session, Response):
            return session
        req = keyfob_request(request)
        try:
            back = await fob.stop_impersonating(req.cookies, secure=req.secure)
        except InvalidToken:
            return redirect("/dashboard?m=not-imp")
        if back is None:  # the admin's own session ended meanwhile
            req.signed_out(fob.clear_cookies(req.cookies, secure=req.secure))
            request.state.session = None
            return redirect("/signin?m=imp-ended")
        req.replaced(back)
        request.state.session = back.session
        return redirect("/admin?m=imp-stopped")

    return app


STRATEGY_NOTES = {
    "jwt": "jwt strategy: the session is an encrypted JWT in your cookie (Auth.js v5 format). "
    "The server reads no store per request; revocation works through a per-user token version "
    "and a denylist of ids.",
    "database": "database strategy: your cookie is an opaque random token; the server keeps only its SHA-256 "
    "and looks it up on every request, so revoking a session takes effect at once.",
    "hybrid": "hybrid strategy: a short-lived signed access token (checked without a store read) plus a "
    "rotating refresh token; revocations reach every node through the revocation feed.",
}
