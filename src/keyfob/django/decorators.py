"""``login_required``, ``role_required``, ``fresh_required`` for keyfob sessions, and CBV mixins.

```python
from keyfob.django.decorators import login_required, role_required, fresh_required, LoginRequiredMixin

@login_required                      # HTML GET → redirect to settings.LOGIN_URL?next=…; else JSON 401
def dashboard(request): ...

@role_required("admin")              # then 403 unless request.keyfob_session.role is one of them
async def purge(request): ...        # sync and async views alike

@fresh_required(max_age=300)         # 403 reauthentication_required when the sign-in is older
def change_email(request): ...

class Reports(RoleRequiredMixin, View):
    required_roles = ("admin", "auditor")
```

They read ``request.keyfob_session`` (``KeyfobMiddleware``). The redirect follows Django's own
``login_required`` (``settings.LOGIN_URL``, ``next``); API requests (``Accept`` without ``text/html``,
or not a GET) get keyfob's JSON 401.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

from .._session import Session
from ..errors import KeyfobError
from ..web import Forbidden, not_signed_in
from .conf import get_fob
from .middleware import error_response

__all__ = ["FreshRequiredMixin", "LoginRequiredMixin", "RoleRequiredMixin", "fresh_required",
           "login_required", "role_required"]

V = TypeVar("V", bound=Callable[..., Any])
Check = Callable[[HttpRequest], HttpResponse | None]


def _wants_html(request: HttpRequest) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


def _session_or_refusal(request: HttpRequest) -> Session | HttpResponse:
    session: Session | None = getattr(request, "keyfob_session", None)
    if session is not None:
        return session
    if _wants_html(request):
        return redirect_to_login(request.get_full_path())
    return error_response(not_signed_in(getattr(getattr(request, "keyfob", None), "result", None)))


def _signed_in(request: HttpRequest) -> HttpResponse | None:
    outcome = _session_or_refusal(request)
    return outcome if isinstance(outcome, HttpResponse) else None


def _has_role(roles: frozenset[str]) -> Check:
    def check(request: HttpRequest) -> HttpResponse | None:
        outcome = _session_or_refusal(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        if outcome.role not in roles:
            return error_response(Forbidden(f"this needs the role {' or '.join(sorted(roles))}",
                                            hint="sign in with an account that has it"))
        return None

    return check


def _fresh(max_age: float | None) -> Check:
    def check(request: HttpRequest) -> HttpResponse | None:
        outcome = _session_or_refusal(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        if not get_fob().is_fresh(outcome, max_age):
            exc: KeyfobError = Forbidden("this action needs a recent sign-in",
                                         hint="sign in again, then retry")
            exc.code = "reauthentication_required"  # type: ignore[misc]
            return error_response(exc)
        return None

    return check


def _guard(check: Check) -> Callable[[V], V]:
    def decorate(view: V) -> V:
        if iscoroutinefunction(view):
            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = check(request)
                return refused if refused is not None else await view(request, *args, **kwargs)

            return markcoroutinefunction(async_wrapper)  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refused = check(request)
            return refused if refused is not None else view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def login_required(view: V) -> V:
    """The view needs a keyfob session: redirect HTML requests to ``LOGIN_URL``, else JSON 401."""
    return _guard(_signed_in)(view)


def role_required(*roles: str) -> Callable[[V], V]:
    """Like :func:`login_required`, then 403 unless ``session.role`` is one of ``roles``."""
    return _guard(_has_role(frozenset(roles)))


def fresh_required(view: V | None = None, /, *, max_age: float | None = None) -> Any:
    """Like :func:`login_required`, then 403 ``reauthentication_required`` when the sign-in is older
    than ``max_age`` seconds (default ``KEYFOB["FRESH_AGE"]``). Bare or with ``max_age``."""
    decorate = _guard(_fresh(max_age))
    return decorate(view) if view is not None else decorate


class _GuardMixin:
    def keyfob_check(self, request: HttpRequest) -> HttpResponse | None:
        raise NotImplementedError

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refused = self.keyfob_check(request)
        if refused is not None:
            if getattr(self, "view_is_async", False):
                async def refusal() -> HttpResponse:
                    return refused

                return refusal()
            return refused
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class LoginRequiredMixin(_GuardMixin):
    """Class-based views: :func:`login_required`."""

    def keyfob_check(self, request: HttpRequest) -> HttpResponse | None:
        return _signed_in(request)


class RoleRequiredMixin(_GuardMixin):
    """Class-based views: :func:`role_required` with ``required_roles``."""

    required_roles: tuple[str, ...] = ()

    def keyfob_check(self, request: HttpRequest) -> HttpResponse | None:
        return _has_role(frozenset(self.required_roles))(request)


class FreshRequiredMixin(_GuardMixin):
    """Class-based views: :func:`fresh_required` with ``fresh_max_age`` (None: the setting)."""

    fresh_max_age: float | None = None

    def keyfob_check(self, request: HttpRequest) -> HttpResponse | None:
        return _fresh(self.fresh_max_age)(request)
