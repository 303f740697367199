"""Guards for views on keyfob sessions: decorators for function views, mixins for class-based views.

```python
from keyfob.django.decorators import (login_required, role_required, fresh_required, require_session,
                                      LoginRequiredMixin, RequireSessionMixin)

@login_required                      # HTML GET → redirect to settings.LOGIN_URL?next=…; else JSON 401
def dashboard(request): ...

@role_required("admin")              # then 403 unless request.keyfob_session.role is one of them
async def purge(request): ...        # sync and async views alike

@fresh_required(max_age=300)         # 403 reauthentication_required when the sign-in is older
def change_email(request): ...

@require_session(max_staleness=0)    # the store confirms this request, under every strategy
def pay(request): ...

@require_session(fresh=600)          # 403 step_up_required {"reason": "fresh", "max_age": 600, "hint": …}
async def change_password(request): ...

class Reports(RoleRequiredMixin, View):
    required_roles = ("admin", "auditor")

class Payout(RequireSessionMixin, View):
    max_staleness = 0                # and outage_grace, fresh, level: require_session's parameters
    level = 2
```

They read ``request.keyfob_session`` (``KeyfobMiddleware``). The redirect follows Django's own
``login_required`` (``settings.LOGIN_URL``, ``next``); API requests (``Accept`` without ``text/html``,
or not a GET) get keyfob's JSON 401. ``require_session`` is the session policy of
docs/SESSION_POLICY.md, as in keyfob's FastAPI, Starlette and Flask integrations: ``max_staleness``
and ``outage_grace`` authenticate again with the route's demands (the request core's ``confirm``,
awaited on the home loop by async views), ``fresh`` and ``level`` answer the step-up 403 whose JSON
says what to do (``reason``, ``max_age`` or ``level``, ``hint``).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

from .._session import Session
from ..errors import KeyfobError
from ..web import Forbidden, RequestState, not_signed_in
from ._api import _meta, _state
from ._loop import home
from .conf import astarted_fob, get_fob, started_fob
from .middleware import _attach, error_response

__all__ = ["FreshRequiredMixin", "LoginRequiredMixin", "RequireSessionMixin", "RoleRequiredMixin",
           "fresh_required", "login_required", "require_session", "role_required"]

V = TypeVar("V", bound=Callable[..., Any])


def _wants_html(request: HttpRequest) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


def _session_or_refusal(request: HttpRequest) -> Session | HttpResponse:
    session: Session | None = getattr(request, "keyfob_session", None)
    if session is not None:
        return session
    if _wants_html(request):
        return redirect_to_login(request.get_full_path())
    return error_response(not_signed_in(getattr(getattr(request, "keyfob", None), "result", None)))


class _Guard(ABC):
    """What a view demands of the request's keyfob session, checked before the view runs.

    :meth:`check` answers for sync views and :meth:`acheck` for async ones: the refusal to send
    instead of the view's response, or None to run the view.
    """

    @abstractmethod
    def check(self, request: HttpRequest) -> HttpResponse | None:
        """The refusal (redirect, 401, 403, 503), or None."""

    async def acheck(self, request: HttpRequest) -> HttpResponse | None:
        """:meth:`check` for async views (the same, where the guard does no I/O)."""
        return self.check(request)


class _SignedIn(_Guard):
    """A keyfob session: else a redirect to ``LOGIN_URL`` (HTML GET) or the JSON 401."""

    def check(self, request: HttpRequest) -> HttpResponse | None:
        outcome = _session_or_refusal(request)
        return outcome if isinstance(outcome, HttpResponse) else None


class _HasRole(_Guard):
    """Signed in, then 403 unless ``session.role`` is one of ``roles``."""

    def __init__(self, roles: frozenset[str]) -> None:
        self.roles = roles

    def check(self, request: HttpRequest) -> HttpResponse | None:
        outcome = _session_or_refusal(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        if outcome.role not in self.roles:
            return error_response(Forbidden(f"this needs the role {' or '.join(sorted(self.roles))}",
                                            hint="sign in with an account that has it"))
        return None


class _Fresh(_Guard):
    """Signed in, then 403 ``reauthentication_required`` when the sign-in is older than ``max_age``."""

    def __init__(self, max_age: float | None) -> None:
        self.max_age = max_age

    def check(self, request: HttpRequest) -> HttpResponse | None:
        outcome = _session_or_refusal(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        if not get_fob().is_fresh(outcome, self.max_age):
            exc: KeyfobError = Forbidden("this action needs a recent sign-in",
                                         hint="sign in again, then retry")
            exc.code = "reauthentication_required"  # type: ignore[misc]
            return error_response(exc)
        return None


class _Policy(_Guard):
    """:func:`require_session`'s demands: a store confirmation (``max_staleness``, ``outage_grace``),
    then a session, then the step-up checks (``fresh``, ``level``)."""

    def __init__(self, *, max_staleness: float | None = None, outage_grace: float = 0,
                 fresh: float | None = None, level: int | None = None) -> None:
        self.max_staleness = max_staleness
        self.outage_grace = outage_grace
        self.fresh = fresh
        self.level = level
        #: Does this route authenticate again with its own demands? (Else it pays nothing extra.)
        self.confirms = max_staleness is not None or bool(outage_grace)

    def check(self, request: HttpRequest) -> HttpResponse | None:
        req = _state(request)
        if self.confirms and req.session is not None:  # no session: the store would not find one either
            before = req.session
            try:
                fob = started_fob()
                home.run(req.confirm(max_staleness=self.max_staleness, outage_grace=self.outage_grace,
                                     meta=_meta(request) if fob.settings.bind is not None else None))
            except KeyfobError as exc:  # StoreUnavailable: fail closed (503)
                return error_response(exc)
            _confirmed(request, req, before)
        return self._admit(request, req)

    async def acheck(self, request: HttpRequest) -> HttpResponse | None:
        req = _state(request)
        if self.confirms and req.session is not None:
            before = req.session
            try:
                fob = await astarted_fob()
                await home.arun(req.confirm(max_staleness=self.max_staleness, outage_grace=self.outage_grace,
                                            meta=_meta(request) if fob.settings.bind is not None else None))
            except KeyfobError as exc:
                return error_response(exc)
            _confirmed(request, req, before)
        return self._admit(request, req)

    def _admit(self, request: HttpRequest, req: RequestState) -> HttpResponse | None:
        outcome = _session_or_refusal(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        try:
            req.require(fresh=self.fresh, level=self.level)
        except KeyfobError as exc:  # StepUpRequired: 403 with reason, max_age/level, hint
            return error_response(exc)
        return None


def _confirmed(request: HttpRequest, req: RequestState, before: Session) -> None:
    """The confirmation's session replaces the middleware's on the request (and ``request.user``)."""
    if req.session is before:
        return
    if req.session is None:  # revoked, expired, ... as the store says
        request.keyfob_session = None
        request.user = AnonymousUser()
    else:
        _attach(request, req)


def _guard(check: _Guard) -> Callable[[V], V]:
    """A decorator that runs ``check`` before a sync or async function view."""

    def decorate(view: V) -> V:
        if iscoroutinefunction(view):
            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = await check.acheck(request)
                return refused if refused is not None else await view(request, *args, **kwargs)

            return markcoroutinefunction(async_wrapper)  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refused = check.check(request)
            return refused if refused is not None else view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


_SIGNED_IN = _SignedIn()


def login_required(view: V) -> V:
    """The view needs a keyfob session: redirect HTML requests to ``LOGIN_URL``, else JSON 401."""
    return _guard(_SIGNED_IN)(view)


def role_required(*roles: str) -> Callable[[V], V]:
    """Like :func:`login_required`, then 403 unless ``session.role`` is one of ``roles``."""
    return _guard(_HasRole(frozenset(roles)))


def fresh_required(view: V | None = None, /, *, max_age: float | None = None) -> Any:
    """Like :func:`login_required`, then 403 ``reauthentication_required`` when the sign-in is older
    than ``max_age`` seconds (default ``KEYFOB["FRESH_AGE"]``). Bare or with ``max_age``."""
    decorate = _guard(_Fresh(max_age))
    return decorate(view) if view is not None else decorate


def require_session(view: V | None = None, /, *, max_staleness: float | None = None, outage_grace: float = 0,
                    fresh: float | None = None, level: int | None = None) -> Any:
    """Like :func:`login_required`, with the route's session policy (docs/SESSION_POLICY.md):

    * ``max_staleness=0``: the store confirms this request, under every strategy (a payment view);
      ``N``: the revocation view may answer if it is at most ``N`` seconds behind;
    * ``outage_grace``: seconds of a store outage this view may be answered from the revocation view;
    * ``fresh`` (seconds) / ``level``: 403 ``step_up_required`` unless the user proved who they are
      that recently / that strongly; the JSON says what to do (``reason``, ``max_age`` or ``level``,
      ``hint``: ``Keyfob.elevate``).

    Bare (``@require_session``) or with options (``@require_session(max_staleness=0, fresh=600)``),
    on sync and async views. A store outage during the confirmation is a 503.
    """
    policy = _Policy(max_staleness=max_staleness, outage_grace=outage_grace, fresh=fresh, level=level)
    decorate = _guard(policy)
    return decorate(view) if view is not None else decorate


class _GuardMixin(ABC):
    """Runs :meth:`keyfob_guard`'s check before a class-based view dispatches (sync or async)."""

    @abstractmethod
    def keyfob_guard(self) -> _Guard:
        """What this view demands of the session (built from the class's attributes)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        check = self.keyfob_guard()
        if getattr(self, "view_is_async", False):
            return self._adispatch(check, request, *args, **kwargs)
        refused = check.check(request)
        return refused if refused is not None else super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    async def _adispatch(self, check: _Guard, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refused = await check.acheck(request)
        if refused is not None:
            return refused
        return await super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class LoginRequiredMixin(_GuardMixin):
    """Class-based views: :func:`login_required`."""

    def keyfob_guard(self) -> _Guard:
        return _SIGNED_IN


class RoleRequiredMixin(_GuardMixin):
    """Class-based views: :func:`role_required` with ``required_roles``."""

    required_roles: tuple[str, ...] = ()

    def keyfob_guard(self) -> _Guard:
        return _HasRole(frozenset(self.required_roles))


class FreshRequiredMixin(_GuardMixin):
    """Class-based views: :func:`fresh_required` with ``fresh_max_age`` (None: the setting)."""

    fresh_max_age: float | None = None

    def keyfob_guard(self) -> _Guard:
        return _Fresh(self.fresh_max_age)


class RequireSessionMixin(_GuardMixin):
    """Class-based views: :func:`require_session`, with its parameters as class attributes."""

    max_staleness: float | None = None
    outage_grace: float = 0
    fresh: float | None = None
    level: int | None = None

    def keyfob_guard(self) -> _Guard:
        return _Policy(max_staleness=self.max_staleness, outage_grace=self.outage_grace, fresh=self.fresh,
                      level=self.level)
