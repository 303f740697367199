"""Django admin: a user's keyfob sessions, revoke one, sign out everywhere."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from keyfob import Keyfob
from keyfob.django._loop import home

from .test_session_engine import make_user, signed_in, who


def admin_client() -> Client:
    get_user_model().objects.create_superuser("root", "root@example.test", "pw-root-1")
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="root", password="pw-root-1")
    return client


def csrf(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_the_user_page_lists_active_sessions_with_their_device(fob: Keyfob) -> None:
    user = make_user()
    signed_in(REMOTE_ADDR="198.51.100.4")
    admin = admin_client()
    page = admin.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert "Active sessions" in page and "198.51.100.4" in page and "Chrome" in page
    (info,) = home.run(fob.list_sessions(str(user.pk)))
    assert f'data-session-id="{info.id}"' in page


def test_revoke_one_session_from_the_admin_signs_out_that_device(fob: Keyfob) -> None:
    user = make_user()
    laptop, phone = signed_in(), signed_in()
    phone_key = phone.cookies[settings.SESSION_COOKIE_NAME].value
    from keyfob.django.session_backend import SessionStore

    phone_id = SessionStore(phone_key).keyfob_id
    admin = admin_client()
    page = admin.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    response = admin.post(f"/admin/auth/user/{user.pk}/keyfob-sessions/revoke/",
                          {"session_id": phone_id, "csrfmiddlewaretoken": csrf(page)})
    assert response.status_code == 302
    assert who(phone) is None and who(laptop) == "ada"


def test_revoke_refuses_another_users_session_and_a_forged_post(fob: Keyfob) -> None:
    ada, bob = make_user(), make_user("bob", "pw-bob-1")
    bob_client = signed_in("bob", "pw-bob-1")
    from keyfob.django.session_backend import SessionStore

    bob_sid = SessionStore(bob_client.cookies[settings.SESSION_COOKIE_NAME].value).keyfob_id
    admin = admin_client()
    page = admin.get(f"/admin/auth/user/{ada.pk}/change/").content.decode()
    admin.post(f"/admin/auth/user/{ada.pk}/keyfob-sessions/revoke/",
               {"session_id": bob_sid, "csrfmiddlewaretoken": csrf(page)})
    assert who(bob_client) == "bob"  # ada's page cannot revoke bob's session
    forged = admin.post(f"/admin/auth/user/{bob.pk}/keyfob-sessions/revoke-all/")
    assert forged.status_code == 403  # Django's CSRF protects the admin's forms
    assert who(bob_client) == "bob"
    assert admin.get(f"/admin/auth/user/{bob.pk}/keyfob-sessions/revoke-all/").status_code == 405


def test_sign_out_everywhere_from_the_user_page_and_the_list_action(fob: Keyfob) -> None:
    ada, bob = make_user(), make_user("bob", "pw-bob-1")
    ada_devices = [signed_in(), signed_in()]
    bob_device = signed_in("bob", "pw-bob-1")
    admin = admin_client()
    page = admin.get(f"/admin/auth/user/{ada.pk}/change/").content.decode()
    admin.post(f"/admin/auth/user/{ada.pk}/keyfob-sessions/revoke-all/", {"csrfmiddlewaretoken": csrf(page)})
    assert [who(c) for c in ada_devices] == [None, None] and who(bob_device) == "bob"
    listing = admin.get("/admin/auth/user/").content.decode()
    action = {"action": "keyfob_sign_out_everywhere", "_selected_action": [bob.pk],
              "csrfmiddlewaretoken": csrf(listing)}
    response = admin.post("/admin/auth/user/", action)
    assert response.status_code == 302
    assert who(bob_device) is None
    assert admin.get("/admin/").status_code == 200  # the admin's own session is untouched
