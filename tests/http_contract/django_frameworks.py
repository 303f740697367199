"""The Django rows of the HTTP contract suite: the contract's app on ``KeyfobMiddleware``, driven by
Django's test clients — ``django.test.Client`` (WSGI) and ``django.test.AsyncClient`` (ASGI, async
middleware path) — registered as ``django-wsgi`` and ``django-asgi``.

The app (``tests.http_contract.django_urls``) has no ``CsrfViewMiddleware``: keyfob's core decides CSRF
for every view, as in every other framework row (with Django's CSRF installed, Django's check decides
for the app's own views instead: ``tests/django/test_middleware.py``).
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from keyfob import Keyfob

from .frameworks import Client, Headers, Reply, _decode, framework

MIDDLEWARE = ["keyfob.django.middleware.KeyfobMiddleware"]


def _setup() -> None:
    from django.conf import settings

    import django

    if not settings.configured:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")
        django.setup()


class _DjangoClient:
    """Django's test client as the contract's ``Client``; its cookie jar forgets deleted cookies, as a
    browser does (Django's test client keeps them with an empty value)."""

    base_url = "http://testserver"

    def __init__(self, client: Any, asgi: bool) -> None:
        self.client = client
        self.asgi = asgi

    def request(self, method: str, path: str, *, headers: Headers | None = None, json: Any = None,
                form: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
        joined: dict[str, str] = {}
        for name, value in headers or []:  # repeated headers arrive joined with ", " (as in WSGI)
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        content_type = joined.pop("Content-Type", None)
        body: str | bytes = b""
        if json is not None:
            body, content_type = jsonlib.dumps(json), "application/json"
        elif form is not None:
            body, content_type = urlencode(form), "application/x-www-form-urlencoded"
        elif raw is not None:
            body = raw
        kwargs: dict[str, Any] = {"headers": joined}
        if content_type is not None:
            kwargs["content_type"] = content_type
        if self.asgi:
            import asyncio

            response = asyncio.run(self.client.generic(method, path, body, **kwargs))
        else:
            response = self.client.generic(method, path, body, **kwargs)
        for name, morsel in list(response.cookies.items()):
            if morsel["max-age"] == 0 or morsel["max-age"] == "0":
                self.client.cookies.pop(name, None)
        set_cookies = [m.output(header="").strip() for m in response.cookies.values()]
        headers_out = {k.lower(): v for k, v in response.items()}
        return Reply(status=response.status_code, body=_decode(response.content), headers=headers_out,
                     set_cookies=set_cookies, vary=response.get("Vary"))

    def cookies(self) -> dict[str, str]:
        return {name: m.value for name, m in self.client.cookies.items() if m.value}

    def set_cookie(self, name: str, value: str) -> None:
        self.client.cookies[name] = value

    def clear_cookies(self) -> None:
        self.client.cookies.clear()


@contextmanager
def _django(fob: Keyfob, asgi: bool) -> Iterator[Client]:
    _setup()
    from django.test import AsyncClient
    from django.test import Client as WsgiClient
    from django.test.utils import override_settings

    from keyfob.django._loop import home
    from keyfob.django.conf import use_fob

    with override_settings(ROOT_URLCONF="tests.http_contract.django_urls", MIDDLEWARE=MIDDLEWARE,
                           ALLOWED_HOSTS=["testserver"]), use_fob(fob):
        try:
            yield _DjangoClient(AsyncClient() if asgi else WsgiClient(), asgi)
        finally:
            home.run(fob.close())


@framework("django-wsgi")
@contextmanager
def django_wsgi_client(fob: Keyfob) -> Iterator[Client]:
    with _django(fob, asgi=False) as client:
        yield client


@framework("django-asgi")
@contextmanager
def django_asgi_client(fob: Keyfob) -> Iterator[Client]:
    with _django(fob, asgi=True) as client:
        yield client
