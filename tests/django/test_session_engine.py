"""keyfob's Django session engine under django.contrib.auth: what a Django app gets for one setting."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import AsyncClient, Client, override_settings

from keyfob import FakeClock, Keyfob
from keyfob.django._loop import home
from keyfob.django.conf import get_fob, started_fob
from keyfob.django.session_backend import ANONYMOUS_PREFIX, SessionStore

from .conftest import STORES, KeyfobSettings

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def make_user(username: str = "ada", password: str = "pw-ada-1") -> Any:
    return get_user_model().objects.create_user(username=username, password=password)


def signed_in(username: str = "ada", password: str = "pw-ada-1", **headers: str) -> Client:
    client = Client(HTTP_USER_AGENT=UA, **headers)
    assert client.post("/signin", {"username": username, "password": password}).status_code == 200
    return client


def who(client: Client) -> str | None:
    user: str | None = client.get("/peek").json()["user"]
    return user


def rows(fob: Keyfob, user_id: str) -> list[Any]:
    return list(home.run(fob.store.list_user(user_id)))


@pytest.mark.parametrize("django_store", STORES, indirect=True)
def test_login_and_logout_work_unchanged_on_keyfob_sessions(fob: Keyfob) -> None:
    make_user()
    client = Client(HTTP_USER_AGENT=UA)
    assert client.get("/whoami").json() == {"user": None, "seen": 1}  # an anonymous session first
    anonymous_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.post("/signin", {"username": "ada", "password": "pw-ada-1"}).status_code == 200
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert key != anonymous_key  # login() cycled the key: no fixation
    assert not SessionStore().exists(anonymous_key)
    assert client.get("/whoami").json() == {"user": "ada", "seen": 2}  # the anonymous data survived login
    client.post("/signout")
    assert who(client) is None
    assert not SessionStore().exists(key)


@pytest.mark.parametrize("django_store", STORES, indirect=True)
def test_signed_in_sessions_are_indexed_by_user_with_their_device(fob: Keyfob) -> None:
    user = make_user()
    client = signed_in(REMOTE_ADDR="203.0.113.7")
    (info,) = home.run(fob.list_sessions(str(user.pk)))
    assert (info.ip, info.user_agent, info.user_id) == ("203.0.113.7", UA, str(user.pk))
    assert "Chrome" in info.device
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    (row,) = rows(fob, str(user.pk))
    assert row.token_hash == hashlib.sha256(key.encode()).digest()
    assert row.data["_auth_user_id"] == str(user.pk)


def test_the_store_keeps_only_the_hash_of_the_session_key(fob: Keyfob) -> None:
    make_user()
    key = signed_in().cookies[settings.SESSION_COOKIE_NAME].value
    db = sqlite3.connect(settings.DATABASES["default"]["NAME"])
    dump = "\n".join(db.iterdump())
    assert key not in dump
    assert hashlib.sha256(key.encode()).hexdigest().upper() in dump.upper()


@pytest.mark.parametrize("django_store", STORES, indirect=True)
def test_revoke_user_signs_a_django_user_out_on_every_device(fob: Keyfob) -> None:
    user = make_user()
    laptop, phone = signed_in(), signed_in()
    assert who(laptop) == who(phone) == "ada"
    assert home.run(get_fob().revoke_user(str(user.pk))) == 2
    assert who(laptop) is None and who(phone) is None


def test_revoking_one_session_by_id_signs_out_only_that_device(fob: Keyfob) -> None:
    user = make_user()
    laptop, phone = signed_in(), signed_in()
    phone_key = phone.cookies[settings.SESSION_COOKIE_NAME].value
    phone_row = next(r for r in rows(fob, str(user.pk))
                     if r.token_hash == hashlib.sha256(phone_key.encode()).digest())
    assert home.run(fob.revoke(phone_row.id))
    assert who(phone) is None and who(laptop) == "ada"


def test_session_limit_evicts_the_least_recently_active_device(fob: Keyfob,
                                                               keyfob_settings: KeyfobSettings) -> None:
    clock = FakeClock()
    with keyfob_settings(MAX_SESSIONS_PER_USER=2, CLOCK=clock):
        user = make_user()
        first = signed_in()
        clock.advance(10)
        second = signed_in()
        clock.advance(10)
        third = signed_in()
        assert who(first) is None
        assert who(second) == who(third) == "ada"
        assert len(home.run(get_fob().list_sessions(str(user.pk)))) == 2


def test_key_change_at_the_limit_does_not_evict_another_device(fob: Keyfob,
                                                               keyfob_settings: KeyfobSettings) -> None:
    with keyfob_settings(MAX_SESSIONS_PER_USER=2):
        make_user()
        laptop, phone = signed_in(), signed_in()
        before = laptop.cookies[settings.SESSION_COOKIE_NAME].value
        assert laptop.post("/cycle").status_code == 200
        assert laptop.cookies[settings.SESSION_COOKIE_NAME].value != before
        assert who(laptop) == "ada" and who(phone) == "ada"


def test_update_session_auth_hash_keeps_the_user_signed_in_under_a_new_key(fob: Keyfob) -> None:
    make_user()
    client, other = signed_in(), signed_in()
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.post("/password", {"password": "pw-ada-2"})
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != before
    assert not SessionStore().exists(before)
    assert who(client) == "ada"
    assert who(other) is None  # Django's session auth hash: the other device's hash no longer matches


def test_idle_and_absolute_timeouts_end_django_sessions(fob: Keyfob, keyfob_settings: KeyfobSettings) -> None:
    clock = FakeClock()
    with keyfob_settings(IDLE_TIMEOUT=600, ABSOLUTE_TIMEOUT=3600, UPDATE_AGE=60, CLOCK=clock):
        make_user()
        idle, busy = signed_in(), signed_in()
        for _ in range(5):
            clock.advance(400)
            assert who(busy) == "ada"  # activity within the idle timeout keeps it alive
        assert who(idle) is None  # 2000 s without a request: idle timeout
        clock.advance(1700)  # 3700 s after sign-in: past the absolute timeout despite activity
        assert who(busy) is None


def test_rows_expire_at_djangos_session_cookie_age(fob: Keyfob) -> None:
    user = make_user()
    signed_in()
    (row,) = rows(fob, str(user.pk))
    assert row.expires_at - row.last_seen_at == pytest.approx(settings.SESSION_COOKIE_AGE, abs=1)


@override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True)
def test_expire_at_browser_close_gives_a_session_cookie(fob: Keyfob) -> None:
    make_user()
    client = signed_in()
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert not cookie["max-age"] and not cookie["expires"]
    assert who(client) == "ada"


@override_settings(SESSION_SAVE_EVERY_REQUEST=True)
def test_save_every_request_renews_the_cookie_on_reads(fob: Keyfob) -> None:
    make_user()
    client = signed_in()
    response = client.get("/peek")
    assert settings.SESSION_COOKIE_NAME in response.cookies


@pytest.mark.parametrize("cookie", [
    pytest.param("", id="empty"),
    pytest.param("garbage", id="garbage"),
    pytest.param("x" * 43, id="right-length-unknown"),
    pytest.param("a" * 5000, id="oversized"),
    pytest.param("k3yf0b" + "\u00e9" * 37, id="non-ascii"),
    pytest.param("0123456789abcdefghijklmnopqrstuv", id="django-db-backend-key"),
])
def test_bad_session_cookies_give_an_anonymous_request(fob: Keyfob, cookie: str) -> None:
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = cookie
    response = client.get("/whoami")
    assert response.status_code == 200
    assert response.json() == {"user": None, "seen": 1}
    assert response.cookies[settings.SESSION_COOKIE_NAME].value != cookie  # a fresh key, never the sent one


def test_truncated_and_tampered_keys_are_anonymous(fob: Keyfob) -> None:
    make_user()
    key = signed_in().cookies[settings.SESSION_COOKIE_NAME].value
    for bad in (key[:-1], key[:20], key[:-1] + ("A" if key[-1] != "A" else "B")):
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = bad
        assert who(client) is None


def test_clearsessions_and_keyfob_cleanup_delete_expired_rows(fob: Keyfob, keyfob_settings: KeyfobSettings,
                                                              tmp_path: Any) -> None:
    clock = FakeClock()
    with keyfob_settings(CLOCK=clock):
        make_user()
        signed_in()
        live = SessionStore()
        live["k"] = 1
        live.set_expiry(30 * 86400)
        live.save()
        clock.advance(settings.SESSION_COOKIE_AGE + 1)  # the signed-in session is past its age
        assert home.run(started_fob().store.count()) == 2
        call_command("clearsessions")
        assert home.run(started_fob().store.count()) == 1
        assert SessionStore(live.session_key).exists(live.session_key)


@pytest.mark.anyio
async def test_async_views_sign_in_with_alogin_and_read_with_aload(fob: Keyfob) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(make_user)()
    client = AsyncClient(HTTP_USER_AGENT=UA)
    response = await client.post("/asignin", {"username": "ada", "password": "pw-ada-1"})
    assert response.status_code == 200
    first = await client.get("/awhoami")
    second = await client.get("/awhoami")
    assert (first.json(), second.json()) == ({"user": "ada", "seen": 1}, {"user": "ada", "seen": 2})
    user = await get_user_model().objects.aget(username="ada")
    (info,) = await home.arun(fob.list_sessions(str(user.pk)))
    assert info.user_agent == UA


def test_anonymous_sessions_are_not_indexed_under_a_shared_user(fob: Keyfob) -> None:
    a, b = SessionStore(), SessionStore()
    a["x"], b["x"] = 1, 2
    a.save()
    b.save()
    assert a.keyfob_id is not None and a.keyfob_id != b.keyfob_id
    assert [r.user_id for r in rows(fob, ANONYMOUS_PREFIX + a.keyfob_id)] == [ANONYMOUS_PREFIX + a.keyfob_id]


def test_a_session_deleted_elsewhere_is_not_resurrected_by_a_late_save(fob: Keyfob) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    s = SessionStore()
    s["a"] = 1
    s.save()
    home.run(fob.revoke(s.keyfob_id or ""))
    s["a"] = 2
    with pytest.raises(UpdateError):
        s.save()
    assert not s.exists(s.session_key)


# -- misconfiguration ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["jwt", "hybrid"])
def test_session_engine_with_another_strategy_says_what_to_set(fob: Keyfob, keyfob_settings: KeyfobSettings,
                                                               strategy: str) -> None:
    with keyfob_settings(STRATEGY=strategy), pytest.raises(ImproperlyConfigured,
                                                           match=r"KEYFOB\['STRATEGY'\] = 'database'"):
        SessionStore().save()


def test_session_engine_pointing_at_the_package_says_what_to_set(fob: Keyfob) -> None:
    from django.contrib.sessions.middleware import SessionMiddleware

    with override_settings(SESSION_ENGINE="keyfob.django"), pytest.raises(
            ImproperlyConfigured, match=r"keyfob\.django\.session_backend"):
        SessionMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]


def test_a_weak_secret_key_without_keyfob_secret_says_to_set_keyfob_secret(fob: Keyfob) -> None:
    with override_settings(KEYFOB={}, SECRET_KEY="django-insecure-short"), pytest.raises(
            ImproperlyConfigured, match=r"KEYFOB = \{'SECRET'"):
        get_fob()


def test_an_in_memory_sqlite_database_says_to_set_a_store(fob: Keyfob) -> None:
    from keyfob.django.conf import store_url_from_databases

    with pytest.raises(ImproperlyConfigured, match=r"KEYFOB\['STORE'\]"):
        store_url_from_databases({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})


def test_an_unknown_keyfob_setting_is_named(fob: Keyfob) -> None:
    with override_settings(KEYFOB={"SECRET": "x", "IDLE_TIMOUT": 5}), pytest.raises(
            ImproperlyConfigured, match="IDLE_TIMOUT"):
        get_fob()


def test_the_store_is_derived_from_djangos_databases(fob: Keyfob) -> None:
    from keyfob.django.conf import store_url_from_databases

    assert fob.settings.store == "sqlite:///" + settings.DATABASES["default"]["NAME"]
    pg = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "USER": "web",
                      "PASSWORD": "p@ss/word", "HOST": "db.internal", "PORT": 5433}}
    assert store_url_from_databases(pg) == "postgresql://web:p%40ss%2Fword@db.internal:5433/app"


def test_environment_variables_fill_in_what_keyfob_leaves_out(fob: Keyfob,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYFOB_IDLE_TIMEOUT", "900")
    monkeypatch.setenv("KEYFOB_MAX_AGE", "7200")
    with override_settings(KEYFOB={"SECRET": settings.KEYFOB["SECRET"], "MAX_AGE": 3600, "UPDATE_AGE": 60}):
        engine = get_fob()
        assert (engine.settings.idle_timeout, engine.settings.max_age) == (900, 3600)  # KEYFOB wins


def test_manage_py_keyfob_runs_the_cli_on_the_projects_store(fob: Keyfob,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    user = make_user()
    laptop, phone = signed_in(), signed_in()
    call_command("keyfob", "sessions", "list", "--user", str(user.pk), "--json")
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 2 and {s["user_agent"] for s in listed} == {UA}
    call_command("keyfob", "sessions", "revoke-user", str(user.pk))
    assert who(laptop) is None and who(phone) is None
    call_command("keyfob", "cleanup")
    assert "deleted" in capsys.readouterr().out


def test_a_forked_worker_starts_its_own_loop_and_engine(fob: Keyfob) -> None:
    """gunicorn --preload: the parent used keyfob before forking; the child must not hang on its loop."""
    import os

    parent = SessionStore()
    parent["from"] = "parent"
    parent.save()  # the parent's home loop and engine are running now
    pid = os.fork()
    if pid == 0:  # the child: a session save and load on its own loop, then report by exit status
        code = 1
        try:
            import signal

            signal.alarm(20)  # a hang would otherwise block the test run
            child = SessionStore()
            child["from"] = "child"
            child.save()
            code = 0 if SessionStore(child.session_key).load() == {"from": "child"} and SessionStore(
                parent.session_key).load() == {"from": "parent"} else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert SessionStore(parent.session_key).load() == {"from": "parent"}


def test_the_public_names_of_keyfob_django_are_pinned() -> None:
    import keyfob.django

    assert keyfob.django.__all__ == sorted(keyfob.django.__all__) == [
        "asign_in", "asign_out", "csrf_token", "current_session_id", "current_user_id", "get_fob",
        "list_sessions", "revoke_other_sessions", "revoke_session", "sign_in", "sign_out"]
    for name in keyfob.django.__all__:
        assert getattr(keyfob.django, name).__doc__, name
