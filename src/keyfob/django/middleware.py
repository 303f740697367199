"""``KeyfobMiddleware``: keyfob's sessions (jwt, database or hybrid) behind Django's auth.

```python
MIDDLEWARE = [
    ...,
    "django.contrib.auth.middleware.AuthenticationMiddleware",   # if you keep Django's sessions too
    "keyfob.django.middleware.KeyfobMiddleware",                 # after it
]
KEYFOB = {"STRATEGY": "hybrid"}
urlpatterns = [path("auth/", include("keyfob.django.urls")), ...]
```

A thin adapter over :class:`keyfob.web.RequestCore`, like every keyfob integration: it builds the
core's request view from Django's request, authenticates (the one I/O step, on the home loop), lets
the core decide CSRF, and writes the core's cookies and cache headers on the response.

* ``request.keyfob_session``: the :class:`keyfob.Session` or None; ``request.keyfob``: the core's
  request state. With a session, ``request.user`` (and ``request.auser()``) is the
  ``get_user_model()`` row whose primary key is the session's user id, looked up lazily.
* :func:`keyfob.django.sign_in` / :func:`keyfob.django.sign_out` (and ``asign_in``/``asign_out``).
* Sync and async: Django gives the middleware a sync or an async handler (WSGI or ASGI, sync or
  async views) and it runs natively in either mode.

**CSRF — whose check applies.** Every unsafe request is checked by exactly one of them:

* With Django's ``CsrfViewMiddleware`` installed (Django's default), **Django's CSRF protects your
  views**, as always (``{% csrf_token %}`` in forms, ``X-CSRFToken`` for scripts, ``@csrf_exempt``);
  keyfob's core protects keyfob's own ``/auth`` routes (exempt from Django's check) with its
  session-bound token (``GET /auth/csrf`` → ``X-CSRF-Token``), Origin and Fetch Metadata checks.
* Without it, **keyfob's core protects every view**: a script sends ``X-CSRF-Token``, a form a
  ``csrf_token`` field (``{{ request.keyfob.csrf_token }}``); ``@csrf_exempt`` exempts a view.

**Errors.** A keyfob error raised in a view becomes its JSON status (401, 403, 503 with
``Retry-After``); a store outage — also from the session engine under ``SessionMiddleware`` — is a
503, never a 500 and never an anonymous pass. A bad cookie is simply no session.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http.cookies import Morsel
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import SimpleLazyObject

from django.urls import Resolver404, get_resolver

from .._session import Session
from ..engine import AuthResult
from ..errors import CSRFError, KeyfobError
from ..web import CSRF_FIELD, RequestCore, RequestState, RequestView, SetCookie, error_parts
from ..web._cookies import parse_joined_cookie_header
from ._loop import home
from .conf import astarted_fob, get_fob, started_fob

__all__ = ["KeyfobMiddleware", "error_response"]

_ANONYMOUS = AuthResult(None)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DJANGO_FORGERY_MIDDLEWARE = "django.middleware.csrf.CsrfViewMiddleware"  # Django's CSRF


def error_response(exc: KeyfobError) -> JsonResponse:
    """The JSON error response for a keyfob error (``{"error": code, "detail": message}``)."""
    status, body, headers = error_parts(exc)
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


def _view(request: HttpRequest, device: bool) -> RequestView:
    """The core's view of a Django request; ``device`` (``settings.bind`` is set): also the client
    address and user agent, which every check then compares."""
    meta = request.META
    view = RequestView(method=request.method or "GET", scheme=request.scheme or "http",
                       host=meta.get("HTTP_HOST") or meta.get("SERVER_NAME") or "", path=request.path,
                       cookies=parse_joined_cookie_header(meta.get("HTTP_COOKIE") or ""),
                       authorization=meta.get("HTTP_AUTHORIZATION"))
    if view.method not in _SAFE:
        origin = meta.get("HTTP_ORIGIN")
        view.origin = origin  # WSGI joins repeated headers with ", ": the core refuses that
        view.referer = meta.get("HTTP_REFERER")
        view.sec_fetch_site = meta.get("HTTP_SEC_FETCH_SITE")
        view.csrf_header = meta.get("HTTP_X_CSRF_TOKEN")
        view.content_type = meta.get("CONTENT_TYPE")
    if device:  # session binding: the device goes with every check
        view.client_ip = meta.get("REMOTE_ADDR") or None
        view.user_agent = meta.get("HTTP_USER_AGENT")
    return view


class _UserLoader:
    """``get_user_model()``'s row for the session's user id (or AnonymousUser), looked up once:
    ``load`` for ``request.user`` (a ``SimpleLazyObject``), ``aload`` for ``request.auser()``."""

    __slots__ = ("session", "user")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.user: Any = None

    def load(self) -> Any:
        if self.user is None:
            model = get_user_model()
            try:
                pk = model._meta.pk.to_python(self.session.user_id)
            except (ValidationError, ValueError, TypeError):  # not this model's key (another app's user)
                user = None
            else:  # a database error is not "anonymous": it propagates (500/503)
                user = model._default_manager.filter(pk=pk).first()
            self.user = user if user is not None else AnonymousUser()
        return self.user

    async def aload(self) -> Any:
        return await sync_to_async(self.load)()


def _attach(request: HttpRequest, req: RequestState) -> None:
    request.keyfob = req
    session = req.session
    request.keyfob_session = session
    if session is not None:
        loader = _UserLoader(session)
        request.user = SimpleLazyObject(loader.load)
        request.auser = loader.aload
    elif not hasattr(request, "user"):
        request.user = AnonymousUser()


def _write(req: RequestState, response: HttpResponse) -> HttpResponse:
    """The core's cookies and cache headers onto a Django response."""
    if not req.touches_response():
        return response
    headers = response.headers  # what response[...] reads and writes, one call less each time
    vary = headers.get("Vary")
    for name, value in req.finish(cache_control="Cache-Control" in headers, vary=vary):
        if name == "set-cookie":
            continue  # below: Django sends each cookie of response.cookies as its own header
        if name == "vary" and vary is not None:
            headers["Vary"] = f"{vary}, {value}"
        else:
            headers[name] = value
    for cookie in req.set_cookies():
        response.cookies[cookie.name] = _Morsel(cookie)
    return response


class _Morsel(Morsel):  # type: ignore[type-arg]
    """A ``Set-Cookie`` the core validated, sent as it is (Django writes ``response.cookies``)."""

    def __init__(self, cookie: SetCookie) -> None:
        super().__init__()
        self.set(cookie.name, cookie.value, cookie.value)
        self._header = cookie.header()
        if cookie.max_age is not None:
            self["max-age"] = cookie.max_age  # read back by test clients (deletion when 0)
        self["path"] = cookie.path

    def output(self, attrs: Any = None, header: str = "Set-Cookie:") -> str:
        return f"{header} {self._header}" if header else self._header

    def OutputString(self, attrs: Any = None) -> str:
        return str(self._header)


class KeyfobMiddleware:
    """Authenticates every request into ``request.keyfob_session``; writes keyfob's cookies after it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self._core: RequestCore | None = None
        self._core_fob: Any = None
        self._started = False  # started_fob() ran for _core_fob (a started engine stays started)
        self.django_csrf = _DJANGO_FORGERY_MIDDLEWARE in list(django_settings.MIDDLEWARE)

    def core(self) -> RequestCore:
        fob = get_fob()
        if self._core is None or self._core_fob is not fob:  # rebuilt with the engine (settings changed)
            self._core, self._core_fob, self._started = RequestCore(fob), fob, False
        return self._core

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        core = self.core()
        req = core.begin(_view(request, core.binds))
        result = _ANONYMOUS
        if req.cookies or req.bearer is not None:  # else nothing to check: the loop is not touched
            try:
                if not self._started:  # once per engine, not a second get_fob() per request
                    self._started = started_fob() is self._core_fob
                result = home.run(cast("Coroutine[Any, Any, AuthResult]", core.authenticate(req)))
            except KeyfobError as exc:  # StoreUnavailable: fail closed
                return error_response(exc)
        refused = self._admit(request, req, result)
        if refused is not None:
            return refused
        return _write(req, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        core = self.core()
        req = core.begin(_view(request, core.binds))
        result = _ANONYMOUS
        if req.cookies or req.bearer is not None:
            try:
                if not self._started:
                    self._started = await astarted_fob() is self._core_fob
                result = await home.arun(cast("Coroutine[Any, Any, AuthResult]", core.authenticate(req)))
            except KeyfobError as exc:
                return error_response(exc)
        refused = self._admit(request, req, result)
        if refused is not None:
            return refused
        return _write(req, await self.get_response(request))

    def _admit(self, request: HttpRequest, req: RequestState, result: AuthResult) -> HttpResponse | None:
        """Step 3 of the core: the session, and CSRF where keyfob's check applies (module docstring)."""
        req.result, req.session = result, result.session
        _attach(request, req)
        if request.method in _SAFE or not self._keyfob_checks(request):
            return None
        view = req.view
        if view.csrf_header is None and (view.content_type or "").startswith("multipart/form-data"):
            # a form with files: Django parses it (within DATA_UPLOAD_MAX_* limits), so its field counts
            view.csrf_header = request.POST.get(CSRF_FIELD)
        try:
            if req.admit(result):  # a urlencoded form without the header: the field is the token
                req.check_csrf(request.POST.get(CSRF_FIELD))
        except CSRFError as exc:
            return _write(req, error_response(exc))
        except KeyfobError as exc:
            return error_response(exc)
        return None

    def _keyfob_checks(self, request: HttpRequest) -> bool:
        """Does keyfob's CSRF check apply to this unsafe request's view? (Resolved here, once: a
        sync ``process_view`` would cost an asgiref thread per request under ASGI.)"""
        try:
            match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return not self.django_csrf  # no view: nothing runs, but check anyway without Django's CSRF
        view = match.func
        if getattr(view, "keyfob_csrf", False):
            return True  # keyfob's /auth routes: always keyfob's check
        return not self.django_csrf and not getattr(view, "csrf_exempt", False)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, KeyfobError):
            return None
        response = error_response(exception)
        req: RequestState | None = getattr(request, "keyfob", None)
        return _write(req, response) if req is not None else response
