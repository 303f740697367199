"""The request core: every rule of keyfob's request lifecycle, once, for every framework.

An integration (``keyfob.starlette``, ``keyfob.flask``, ``keyfob.django``...) is a thin adapter
that drives these steps, the way httpx's sans-I/O auth flows are driven by both ``Client`` and
``AsyncClient``::

    core = RequestCore(fob)                          # once per app
    req = core.begin(RequestView(...))               # pure: cookies, credential, secure
    result = await core.authenticate(req)            # the one I/O step (the engine's coroutine)
    if req.admit(result):                            # pure: session + CSRF; raises CSRFError
        req.check_csrf(form_field("csrf_token"))     # only for a form post without the header
    ... the view runs; it calls req.signed_in(issued) / req.signed_out(cleared) / req.replaced(issued)
    for name, value in req.finish(cache_control=..., vary=...):   # pure: headers to add
        response.headers.add(name, value)

Errors become responses with :func:`error_parts` (status, JSON body, extra headers).

The rules, each written only here:

* **Credential.** A keyfob session or refresh cookie is the credential when present; otherwise an
  ``Authorization: Bearer`` token is. ``secure`` (cookie names and attributes) is decided once:
  Secure except plain-http ``localhost``/``testserver`` development, unless settings say otherwise.
* **CSRF** on unsafe methods (anything but GET, HEAD, OPTIONS, TRACE), unless the path is exempt:
  skipped only when the request authenticated by bearer *and* carries no keyfob cookie. Otherwise,
  in order: more than one ``Origin`` header is refused; ``Sec-Fetch-Site: cross-site`` is refused
  (unless the Origin is listed in ``allowed_origins``); the Origin (or Referer) must be allowed; and
  when any keyfob cookie rides along, the submitted token must match the signed CSRF cookie, which
  is bound to the session (anonymous before sign-in; a new token at sign-in, sign-out and rotation).
* **Cookies out.** The cookies ``authenticate`` rolled or refreshed, unless the view signed in or out
  (its cookies replace those of the same name), plus a CSRF cookie re-bound to the new session.
* **Cache.** A response that carries a session or sets a keyfob cookie gets ``Cache-Control:
  no-store`` (unless the view set one) and ``Vary: Cookie``.
* **Errors.** ``KeyfobError.status_code``: 401 no or invalid session, 403 CSRF or wrong role,
  503 store unavailable (with ``Retry-After``), as ``{"error": code, "detail": message}``.
* **Store outage.** Fail closed: 503. On a safe method (GET, HEAD) the adapter defers the outage
  (:meth:`RequestState.defer`) so that a route declaring ``outage_grace`` can still be answered
  from the revocation view (:meth:`RequestState.confirm`); any other route answers the 503 — the
  adapter replaces whatever the view returned (:attr:`RequestState.outage` still set at the
  response) — and :meth:`RequestState.require` raises it at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._session import AuthResult, RequestMeta
from ..errors import CSRFError, KeyfobError, SessionError, StepUpRequired, StoreUnavailable
from ._cookies import CookieSpec, SetCookie, is_local_development
from .csrf import SAFE_METHODS, CSRFProtect

if TYPE_CHECKING:
    from .._session import Session
    from ..engine import Issued, Keyfob

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CSRF_HEADER", "MAX_FORM_BYTES", "NO_STORE", "SESSION_HEADERS",
           "VARY_COOKIE", "Forbidden", "RequestCore", "RequestState", "RequestView", "error_parts",
           "not_signed_in"]

#: Base name of the CSRF cookie (``__Host-`` prefixed when Secure).
CSRF_COOKIE = "keyfob.csrf-token"


def csrf_cookie_name(session_cookie_name: str) -> str:
    """The CSRF cookie's base name, following the session cookie's: ``keyfob.session-token`` →
    ``keyfob.csrf-token`` (:data:`CSRF_COOKIE`), ``keyfob-8001.session-token`` → ``keyfob-8001.csrf-token``.

    Apps that keep their sessions apart on one host by ``cookie_name`` (cookies ignore the port) then
    keep their CSRF cookies apart too; with one shared name, each app would replace the other's.
    """
    return session_cookie_name.removesuffix(".session-token") + ".csrf-token"


#: Header and form field that carry the submitted CSRF token.
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: Longest urlencoded form body an adapter reads to find ``csrf_token``.
MAX_FORM_BYTES = 64 * 1024
_FORM_TYPE = "application/x-www-form-urlencoded"
#: The cache headers of a session response; ``finish`` returns this very tuple when they are all it adds
#: (adapters may pre-encode it).
NO_STORE = ("cache-control", "no-store")
VARY_COOKIE = ("vary", "Cookie")
SESSION_HEADERS = (NO_STORE, VARY_COOKIE)
_NO_COOKIES: Mapping[str, str] = {}


class Forbidden(KeyfobError):
    """Signed in, but not allowed (wrong role, or the sign-in is too old for this action) → 403."""

    code = "forbidden"
    status_code = 403


def error_parts(exc: KeyfobError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, {"error": code, "detail": message}, extra headers)`` for an error response.
    A step-up 403 adds its machine-readable fields (``reason``, ``max_age`` or ``level``, ``hint``)."""
    headers = {"Retry-After": "1"} if isinstance(exc, StoreUnavailable) else {}
    body: dict[str, Any] = {"error": exc.code, "detail": str(exc)}
    if isinstance(exc, StepUpRequired):
        body.update(exc.to_json())
    return exc.status_code, body, headers


def not_signed_in(result: AuthResult | None) -> SessionError:
    """The 401 for a request without a session: the reason the cookie was refused, if one was."""
    if result is not None and result.error is not None:
        return result.error
    return SessionError("you are not signed in", hint="sign in first")


def _base(name: str) -> str:
    """A cookie's logical name: ``name.3`` (a chunk) → ``name``."""
    head, dot, tail = name.rpartition(".")
    return head if dot and tail.isdigit() else name


class RequestView:
    """What the core reads from a request. Header values are the first of each name, as sent;
    ``origin_count`` is how many ``Origin`` headers there were (more than one is refused).

    The first six may be passed by position (the ASGI adapter does: keyword arguments to a class
    cost a dict per call); the CSRF fields are keyword-only."""

    __slots__ = ("authorization", "client_ip", "content_type", "cookies", "csrf_header", "host", "method",
                 "origin", "origin_count", "path", "referer", "scheme", "sec_fetch_site", "user_agent")

    def __init__(self, method: str, scheme: str, host: str, path: str = "/",
                 cookies: Mapping[str, str] = _NO_COOKIES, authorization: str | None = None, *,
                 origin: str | None = None, origin_count: int | None = None, referer: str | None = None,
                 sec_fetch_site: str | None = None, csrf_header: str | None = None,
                 content_type: str | None = None, client_ip: str | None = None,
                 user_agent: str | None = None) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.cookies = cookies
        self.authorization = authorization
        self.origin = origin
        self.origin_count = (0 if origin is None else 1) if origin_count is None else origin_count
        self.referer = referer
        self.sec_fetch_site = sec_fetch_site
        self.csrf_header = csrf_header
        self.content_type = content_type
        #: The device (read by adapters only when ``settings.bind`` is set: :attr:`RequestCore.binds`).
        self.client_ip = client_ip
        self.user_agent = user_agent


class _Names:
    """The cookie names of one ``secure`` profile, for "does any keyfob cookie ride along?"."""

    __slots__ = ("csrf", "exact", "prefixes")

    def __init__(self, fob: Keyfob, secure: bool, csrf: CookieSpec) -> None:
        prof = fob.profile(secure)
        self.csrf = csrf
        self.exact = frozenset({prof.session.name, prof.refresh.name, csrf.name})
        self.prefixes = (prof.session.name + ".", prof.refresh.name + ".")

    def any_in(self, cookies: Mapping[str, str]) -> bool:
        exact, prefixes = self.exact, self.prefixes
        return any(k in exact or k.startswith(prefixes) for k in cookies)


class RequestCore:
    """The per-app half of the core: settings read once, CSRF protectors for both cookie profiles.

    ``csrf`` overrides ``settings.csrf``; ``csrf_exempt`` lists path prefixes that skip CSRF (a
    webhook, say: it must authenticate some other way). ``binds``: ``settings.bind`` is set, so the
    adapters fill the view's device (``client_ip``, ``user_agent``) and every check passes it: the
    session's binding is compared at each store check (database: every request; hybrid: each refresh
    and each request the store answers; jwt: every request).
    """

    __slots__ = ("_local_cache", "binds", "cookie_secure", "csrf_enabled", "csrf_exempt", "fob", "names",
                 "protect")

    def __init__(self, fob: Keyfob, *, csrf: bool | None = None, csrf_exempt: tuple[str, ...] = ()) -> None:
        self.fob = fob
        self.cookie_secure = fob.settings.cookie_secure
        self.binds = fob.settings.bind is not None
        self.csrf_enabled = fob.settings.csrf if csrf is None else csrf
        self.csrf_exempt = tuple(csrf_exempt)
        self.protect: dict[bool, CSRFProtect] = {}
        self.names: dict[bool, _Names] = {}
        for secure in (True, False):
            spec = CookieSpec(csrf_cookie_name(fob.settings.cookie_name), secure=secure, samesite="lax",
                              httponly=True)
            self.protect[secure] = CSRFProtect(fob.csrf_key(), allowed_origins=fob.settings.allowed_origins,
                                               cookie=spec)
            self.names[secure] = _Names(fob, secure, spec)
        self._local_cache: dict[tuple[str, str], bool] = {}

    def is_secure(self, scheme: str, host: str) -> bool:
        """Secure cookies, except on plain-http local development (unless settings say otherwise)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        key = (scheme, host)
        local = self._local_cache.get(key)
        if local is None:
            local = is_local_development(scheme, host)
            if len(self._local_cache) < 256:  # Host is client-controlled: never grow without bound
                self._local_cache[key] = local
        return not local

    def begin(self, view: RequestView) -> RequestState:
        """Step 1 (pure): choose the credential and the cookie profile."""
        return RequestState(self, view)

    def authenticate(self, req: RequestState) -> Awaitable[AuthResult]:
        """Step 2 (the I/O): the engine call for the chosen credential. Raises ``StoreUnavailable``."""
        if self.binds:
            if req.bearer is not None:
                return self.fob.authenticate_token(req.bearer, meta=req.meta)
            return self.fob.authenticate(req.cookies, secure=req.secure, meta=req.meta)
        if req.bearer is not None:
            return self.fob.authenticate_token(req.bearer)
        return self.fob.authenticate(req.cookies, secure=req.secure)


class RequestState:
    """One request's keyfob state: the session, the cookies to write, the CSRF token.

    Frameworks keep it on their request object (``request.state.keyfob_request``, ``flask.g``).
    """

    __slots__ = ("_csrf_token", "ambient", "bearer", "cookies", "core", "outage", "pending", "result",
                 "secure", "session", "view")

    def __init__(self, core: RequestCore, view: RequestView) -> None:
        self.core = core
        self.view = view
        cookies = view.cookies
        self.cookies = cookies
        self.secure = core.is_secure(view.scheme, view.host)
        auth = view.authorization
        bearer = auth[7:].strip() if auth and auth[:7].lower() == "bearer " else None
        #: Does any keyfob cookie (session, refresh, CSRF) ride along? Then CSRF always applies.
        #: (Only worked out when it matters: a bearer header, or a method CSRF checks.)
        self.ambient = bool(cookies) and (bearer is not None or view.method not in SAFE_METHODS) and \
            core.names[self.secure].any_in(cookies)
        # The cookie is the credential whenever a keyfob cookie is there; the bearer only otherwise.
        self.bearer = bearer if bearer and not self.ambient else None
        self.session: Session | None = None
        self.result: AuthResult | None = None
        #: Cookies the view produced (sign-in, sign-out, rotation, CSRF); they replace rolled ones
        #: of the same name.
        self.pending: list[SetCookie] = []
        self._csrf_token: str | None = None
        #: A store outage the first check met, deferred (:meth:`defer`) until a route bridges it
        #: (``confirm(outage_grace=N)``); still set when the response starts, it becomes the 503.
        self.outage: StoreUnavailable | None = None

    def defer(self, exc: StoreUnavailable) -> AuthResult:
        """Step 2, when the store is down: on a safe method, keep the outage for the route to bridge
        (``outage_grace``) and go on without a session; on any other method, raise it (503)."""
        if self.view.method not in SAFE_METHODS:
            raise exc
        self.outage = exc
        return AuthResult(None, reason=exc.code)

    # -- step 3: admission --------------------------------------------------------------------------
    def admit(self, result: AuthResult) -> bool:
        """Record the session; run the CSRF check. Raises :class:`CSRFError`.

        Returns True when the check still needs the token from a urlencoded form body (no
        ``X-CSRF-Token`` header was sent): read the ``csrf_token`` field (at most
        ``MAX_FORM_BYTES``) and call :meth:`check_csrf` with it.
        """
        self.result = result
        self.session = result.session
        core = self.core
        view = self.view
        if not core.csrf_enabled or view.method in SAFE_METHODS:
            return False
        if self.bearer is not None and result.session is not None:
            return False  # authenticated by bearer, no keyfob cookie: no ambient authority
        if core.csrf_exempt and view.path.startswith(core.csrf_exempt):
            return False
        self._check_request_origin()
        if not self.ambient:
            return False  # no cookie rides along: only login CSRF to stop, and the origin check did
        if view.csrf_header is None and (view.content_type or "").startswith(_FORM_TYPE):
            return True
        self.check_csrf(view.csrf_header)
        return False

    def _check_request_origin(self) -> None:
        view = self.view
        protect = self.core.protect[self.secure]
        # WSGI joins repeated headers with ", " and no serialized origin contains a comma.
        if view.origin_count > 1 or (view.origin is not None and "," in view.origin):
            raise CSRFError("the request has more than one Origin header, so its origin cannot be trusted",
                            hint="send one Origin header (browsers always do)")
        site = view.sec_fetch_site
        if site is not None and site.strip().lower() == "cross-site" and not protect.lists(view.origin):
            raise CSRFError("the browser says this request comes from another site (Sec-Fetch-Site: "
                            "cross-site)", hint="submit from a page of this app, or list the other origin "
                                                "in allowed_origins")
        headers: dict[str, str] = {}
        if view.origin is not None:
            headers["origin"] = view.origin
        if view.referer is not None:
            headers["referer"] = view.referer
        protect.check_origin(headers, f"{view.scheme}://{view.host}")

    def check_csrf(self, submitted: str | None) -> None:
        """The token half of the CSRF check: ``submitted`` must match the session-bound cookie."""
        protect = self.core.protect[self.secure]
        protect.check_token(protect.cookie.read(self.cookies), submitted, binding=self.csrf_binding)

    # -- the view's helpers --------------------------------------------------------------------------
    @property
    def meta(self) -> RequestMeta | None:
        """The request's device (IP address, user agent) as the adapter read it, or None when the
        adapter reads none (then no binding is compared: an unknown device is not another device)."""
        view = self.view
        ip, ua = view.client_ip, view.user_agent
        if ip is None and ua is None:
            return None
        return RequestMeta(ip=ip, user_agent=ua)

    @property
    def csrf_binding(self) -> str:
        """What the CSRF token is bound to: the session id, or ``""`` before sign-in."""
        return self.session.id if self.session is not None else ""

    @property
    def csrf_cookie(self) -> CookieSpec:
        """Where the signed CSRF token lives for this request."""
        return self.core.protect[self.secure].cookie

    def csrf_token(self) -> str:
        """The CSRF token for forms and ``fetch`` (its cookie is set on the response when new)."""
        if self._csrf_token is None:
            token, cookies = self.issue(self.csrf_cookie.read(self.cookies))
            self._csrf_token = token
            self.pending += cookies
        return self._csrf_token

    def issue(self, existing_cookie: str | None) -> tuple[str, list[SetCookie]]:
        """:meth:`CSRFProtect.issue` bound to this request's session (token and cookies, not queued)."""
        if self._csrf_token is not None:
            return self._csrf_token, []  # already issued (or re-bound) in this request: cookie queued
        return self.core.protect[self.secure].issue(existing_cookie, binding=self.csrf_binding)

    @property
    def cookie(self) -> CookieSpec:
        """Alias of :attr:`csrf_cookie`: with :meth:`issue`, this reads like a ``CSRFProtect``."""
        return self.core.protect[self.secure].cookie

    def signed_in(self, issued: Issued) -> None:
        """The view created a session: its cookies go out, and the CSRF token is re-bound to it."""
        self.session = issued.session
        self.pending += issued.cookies
        self._rebind_csrf()

    def signed_out(self, cleared: list[SetCookie]) -> None:
        """The view ended the session: clear its cookies, and start a fresh anonymous CSRF token."""
        self.session = None
        self.pending += cleared
        self._rebind_csrf()

    def replaced(self, issued: Issued) -> None:
        """The view rotated or re-issued the session (privilege change, revoke-others for jwt)."""
        changed = self.session is None or self.session.id != issued.session.id
        self.session = issued.session
        self.pending += issued.cookies
        if changed:
            self._rebind_csrf()

    def _rebind_csrf(self) -> None:
        if not self.core.csrf_enabled:
            return
        token, cookies = self.core.protect[self.secure].issue(None, binding=self.csrf_binding)
        csrf_name = self.csrf_cookie.name
        self.pending[:] = [c for c in self.pending if c.name != csrf_name] + cookies  # in place: shared
        self._csrf_token = token

    # -- step 4: the response ---------------------------------------------------------------------------
    def set_cookies(self) -> list[SetCookie]:
        """The ``Set-Cookie`` values for the response: rolled ones unless replaced, then the view's."""
        result = self.result
        rolled = result.cookies if result is not None else []
        pending = self.pending
        if not pending:
            return rolled
        if not rolled:
            return pending
        names = {_base(c.name) for c in pending}
        return [c for c in rolled if _base(c.name) not in names] + pending

    def touches_response(self) -> bool:
        """Will :meth:`finish` add anything? (False for anonymous requests: the adapter skips it.)"""
        return self.session is not None or bool(self.pending) or bool(
            self.result is not None and self.result.cookies)

    def finish(self, *, cache_control: bool = False, vary: str | None = None) -> Sequence[tuple[str, str]]:
        """The headers to add to the response. ``cache_control``: the response already has one;
        ``vary``: its ``Vary`` value, if any."""
        result = self.result
        cookies = self.set_cookies() if self.pending or (result is not None and result.cookies) else ()
        if not cookies and self.session is not None and cache_control is False and vary is None:
            return SESSION_HEADERS  # the common case: a signed-in request, nothing to set
        out = [("set-cookie", c.header()) for c in cookies]
        if self.session is None and not out:
            return out
        if not cache_control:
            out.append(NO_STORE)
        if vary is None or ("cookie" not in vary.lower() and vary.strip() != "*"):
            out.append(VARY_COOKIE)
        return out

    # -- convenience -------------------------------------------------------------------------------------
    def require(self, *, fresh: float | None = None, level: int | None = None) -> Session:
        """The session, or the 401 to raise (with the reason a cookie was refused); with ``fresh``
        (seconds) or ``level``, the 403 :class:`~keyfob.StepUpRequired` when the session lacks them."""
        session = self.session
        if session is None:
            if self.outage is not None:
                raise self.outage
            raise not_signed_in(self.result)
        if fresh is not None or level is not None:
            need = self.core.fob.step_up(session, fresh=fresh, level=level)
            if need is not None:
                raise need
        return session

    async def confirm(self, *, max_staleness: float | None = None, outage_grace: float = 0,
                      meta: RequestMeta | None = None) -> Session | None:
        """Authenticate again for a route that demands more than the middleware's default check:
        ``max_staleness`` (0: the store confirms this request), ``outage_grace``, and ``meta`` (the
        device, for binding; by default the request's own when ``settings.bind`` is set). Its cookies
        replace the first check's. Returns the session or None."""
        fob = self.core.fob
        if meta is None and self.core.binds:
            meta = self.meta
        if self.bearer is not None:
            result = await fob.authenticate_token(self.bearer, max_staleness=max_staleness,
                                                  outage_grace=outage_grace, meta=meta)
        else:
            result = await fob.authenticate(self.cookies, secure=self.secure, max_staleness=max_staleness,
                                            outage_grace=outage_grace, meta=meta)
        self.outage = None  # the store answered, or the route's outage_grace bridged the outage
        before = self.session
        changed = before is not None and (result.session is None or result.session.id != before.id)
        first = self.result.cookies if self.result is not None else []
        names = {_base(c.name) for c in result.cookies}
        self.pending[:0] = [c for c in first if _base(c.name) not in names]  # the first check's roll stays
        self.result = result
        self.session = result.session
        if changed:
            self._rebind_csrf()
        return result.session
