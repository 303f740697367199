"""Django admin: each user's active keyfob sessions, with "revoke" and "sign out everywhere".

The admin registered for ``get_user_model()`` (Django's ``UserAdmin`` or the project's own) is
re-registered with :class:`KeyfobSessionsAdminMixin` mixed in, when ``keyfob.django`` comes after
the app that registers it in ``INSTALLED_APPS``. Projects that register their user admin later, or
want it explicit, mix it in themselves (and may set ``KEYFOB_ADMIN = False`` to skip the automatic
re-registration)::

    from keyfob.django.admin import KeyfobSessionsAdminMixin

    @admin.register(User)
    class UserAdmin(KeyfobSessionsAdminMixin, auth_admin.UserAdmin): ...

The user's change page lists the sessions (device, IP, created, last seen, expires) with a
"Revoke" button each and "Sign out everywhere"; the user list gets a "Sign out everywhere" action.
Both need the change permission on users, go through Django's CSRF protection and work for every
store and strategy (jwt keeps no list: "sign out everywhere" raises the user's token version).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.utils.translation import gettext_lazy as _

from django.urls import URLPattern, path, reverse

from .._session import SessionInfo
from ._api import current_session_id
from ._loop import home
from .conf import get_fob

__all__ = ["KeyfobSessionsAdminMixin"]


class KeyfobSessionsAdminMixin:
    """Mix into a user ``ModelAdmin``: the sessions panel on the change page and the action."""

    change_form_template = "admin/keyfob/user_change_form.html"
    actions = ["keyfob_sign_out_everywhere"]

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta  # type: ignore[attr-defined]
        name = f"{opts.app_label}_{opts.model_name}"
        site = self.admin_site  # type: ignore[attr-defined]
        return [
            path("<path:object_id>/keyfob-sessions/revoke/", site.admin_view(self.keyfob_revoke_view),
                 name=f"{name}_keyfob_revoke"),
            path("<path:object_id>/keyfob-sessions/revoke-all/",
                 site.admin_view(self.keyfob_revoke_all_view), name=f"{name}_keyfob_revoke_all"),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def keyfob_sessions(self, request: HttpRequest, user: Any) -> list[SessionInfo]:
        fob = get_fob()
        return home.run(fob.list_sessions(str(user.pk), current=current_session_id(request)))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        user = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if user is not None:
            opts = self.model._meta  # type: ignore[attr-defined]
            name = f"admin:{opts.app_label}_{opts.model_name}"
            context.update(
                keyfob_sessions=self.keyfob_sessions(request, user),
                keyfob_strategy=get_fob().settings.strategy,
                keyfob_revoke_url=reverse(f"{name}_keyfob_revoke", args=[user.pk]),
                keyfob_revoke_all_url=reverse(f"{name}_keyfob_revoke_all", args=[user.pk]),
            )
        response: HttpResponse = super().change_view(  # type: ignore[misc]
            request, object_id, form_url, extra_context=context)
        return response

    def _target(self, request: HttpRequest, object_id: str) -> Any:
        if request.method != "POST":
            raise _NotPost
        user = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if user is None or not self.has_change_permission(request, user):  # type: ignore[attr-defined]
            raise PermissionDenied
        return user

    def _back(self, user: Any) -> HttpResponseRedirect:
        opts = self.model._meta  # type: ignore[attr-defined]
        change = f"admin:{opts.app_label}_{opts.model_name}_change"
        return HttpResponseRedirect(reverse(change, args=[user.pk]))

    def keyfob_revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``session_id``: revoke one of this user's sessions."""
        try:
            user = self._target(request, object_id)
        except _NotPost:
            return HttpResponseNotAllowed(["POST"])
        fob = get_fob()
        sid = request.POST.get("session_id", "")
        info = home.run(fob.get_session(sid)) if sid else None
        if info is None or info.user_id != str(user.pk):  # never another user's session
            self.message_user(  # type: ignore[attr-defined]
                request, _("That session is no longer active."), messages.WARNING)
        else:
            home.run(fob.revoke(sid))
            self.message_user(request, _("Session revoked: %(device)s.") % {  # type: ignore[attr-defined]
                "device": info.device})
        return self._back(user)

    def keyfob_revoke_all_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: sign this user out on every device."""
        try:
            user = self._target(request, object_id)
        except _NotPost:
            return HttpResponseNotAllowed(["POST"])
        n = home.run(get_fob().revoke_user(str(user.pk)))
        self.message_user(request, _sign_out_message(user, n))  # type: ignore[attr-defined]
        return self._back(user)

    @admin.action(description=_("Sign out everywhere (keyfob)"), permissions=["change"])
    def keyfob_sign_out_everywhere(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        fob = get_fob()
        for user in queryset:
            n = home.run(fob.revoke_user(str(user.pk)))
            self.message_user(request, _sign_out_message(user, n))  # type: ignore[attr-defined]


class _NotPost(Exception):
    pass


def _sign_out_message(user: Any, n: int) -> str:
    if n < 0:
        return str(_("%(user)s is signed out everywhere (every token refused at its next use).")
                   % {"user": user})
    return str(_("%(user)s is signed out everywhere (%(n)d session(s) revoked).") % {"user": user, "n": n})


def _register() -> None:
    if not getattr(settings, "KEYFOB_ADMIN", True):
        return
    user_model = get_user_model()
    if not admin.site.is_registered(user_model):
        return
    current = type(admin.site._registry[user_model])
    if issubclass(current, KeyfobSessionsAdminMixin):
        return
    admin.site.unregister(user_model)
    admin.site.register(user_model, type(f"Keyfob{current.__name__}", (KeyfobSessionsAdminMixin, current),
                                         {"__module__": __name__}))


_register()
