"""Framework adapters for the HTTP contract suite: one app per framework, one client interface.

Every adapter builds the *same* small app around a :class:`keyfob.Keyfob` — keyfob's ``/auth``
routes plus four of the app's own:

* ``POST /login`` (JSON ``{"user": ..., "role": ...}``) signs in and answers ``{"id": session id}``;
* ``GET /me`` (signed in) answers ``{"user": user id}``;
* ``GET /admin`` (role ``admin``) answers ``{"ok": true}``;
* ``POST /action`` (signed in) answers ``{"ok": true}``;
* session policy (docs/SESSION_POLICY.md): ``GET /confirmed`` (``max_staleness=0``), ``GET /fresh``
  (``fresh=600``), ``GET /strong`` (``level=2``) and ``GET /graced`` (``outage_grace=GRACE``; not on
  Django yet) answer ``{"user": user id}``; ``POST /login`` takes ``"remember": false`` and ``"amr": [...]``;

and returns a :class:`Client` driving it in process over ``http://testserver`` (Starlette's and
FastAPI's ``TestClient`` default) or ``http://localhost`` (Flask's test client default).

**Adding a framework** (Django, say): write a context manager ``def django_client(fob) ->
Iterator[Client]`` that builds the app above with the framework's keyfob integration, wraps its
test client in a class with ``request(method, path, *, headers=..., json=..., form=..., raw=...) -> Reply``,
``cookies() -> dict`` and ``set_cookie(name, value)``, closes everything on exit, and register it::

    @framework("django")
    @contextmanager
    def django_client(fob: Keyfob) -> Iterator[Client]: ...

Every test in ``test_http_contract.py`` then runs against it for jwt, database and hybrid.
Headers go in as a list of ``(name, value)`` pairs, so a test can send one header twice.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request

from keyfob import Keyfob

Headers = list[tuple[str, str]]


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]  # lower-case names, first value
    set_cookies: list[str]
    vary: str | None


class Client(Protocol):
    base_url: str

    def request(self, method: str, path: str, *, headers: Headers | None = None, json: Any = None,
                form: dict[str, str] | None = None, raw: bytes | None = None) -> Reply: ...

    def cookies(self) -> dict[str, str]: ...

    def set_cookie(self, name: str, value: str) -> None: ...

    def clear_cookies(self) -> None: ...


FRAMEWORKS: dict[str, Callable[[Keyfob], AbstractContextManager[Client]]] = {}


def framework(name: str) -> Callable[[Callable[[Keyfob], AbstractContextManager[Client]]],
                                     Callable[[Keyfob], AbstractContextManager[Client]]]:
    def register(factory: Callable[[Keyfob], AbstractContextManager[Client]]
                 ) -> Callable[[Keyfob], AbstractContextManager[Client]]:
        FRAMEWORKS[name] = factory
        return factory

    return register


#: ``GET /graced``'s ``outage_grace`` (seconds): answered from the revocation view for that long into
#: a store outage (starlette, fastapi, flask; Django's adapter does not take the policy parameters yet).
GRACE = 30.0


def _decode(content: bytes) -> Any:
    try:
        return jsonlib.loads(content) if content else None
    except ValueError:
        return content.decode("utf-8", "replace")


# -- Starlette and FastAPI: Starlette's TestClient (httpx) ---------------------------------------------

class _HttpxClient:
    base_url = "http://testserver"

    def __init__(self, client: Any) -> None:
        self.client = client

    def request(self, method: str, path: str, *, headers: Headers | None = None, json: Any = None,
                form: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
        r = self.client.request(method, path, headers=headers or [], json=json, data=form, content=raw)
        return Reply(status=r.status_code, body=_decode(r.content),
                     headers={k.lower(): v for k, v in reversed(r.headers.multi_items())},
                     set_cookies=r.headers.get_list("set-cookie"), vary=r.headers.get("vary"))

    def cookies(self) -> dict[str, str]:
        return dict(self.client.cookies.items())

    def set_cookie(self, name: str, value: str) -> None:
        self.client.cookies.set(name, value)

    def clear_cookies(self) -> None:
        self.client.cookies.clear()


def _lifespan(fob: Keyfob) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await fob.close()

    return lifespan


@framework("starlette")
@contextmanager
def starlette_client(fob: Keyfob) -> Iterator[Client]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from keyfob.errors import KeyfobError
    from keyfob.starlette import (
        KeyfobMiddleware,
        auth_routes,
        current_session,
        error_response,
        keyfob_request,
        sign_in,
    )
    from keyfob.web import Forbidden, not_signed_in

    async def login(request: Request) -> Response:
        body = await request.json()
        issued = await sign_in(request, body["user"], {"role": body.get("role", "user"), "name": "Ada"},
                               remember=body.get("remember", True), amr=body.get("amr", ()))
        return JSONResponse({"id": issued.session.id})

    def policy(**options: Any) -> Callable[[Request], Any]:
        from keyfob.starlette import require_session

        async def endpoint(request: Request) -> Response:
            try:
                session = await require_session(request, **options)
            except KeyfobError as exc:
                return error_response(exc)
            return JSONResponse({"user": session.user_id})

        return endpoint

    def guard(role: str | None = None) -> Callable[[Any], Any]:
        def decorate(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                session = current_session(request)
                try:
                    if session is None:
                        raise not_signed_in(keyfob_request(request).result)
                    if role is not None and session.role != role:
                        raise Forbidden(f"this needs the role {role}")
                except KeyfobError as exc:
                    return error_response(exc)
                return JSONResponse(handler(request))

            return endpoint

        return decorate

    @guard()
    def me(request: Request) -> dict[str, Any]:
        return {"user": current_session(request).user_id}  # type: ignore[union-attr]

    @guard("admin")
    def admin(request: Request) -> dict[str, Any]:
        return {"ok": True}

    @guard()
    def action(request: Request) -> dict[str, Any]:
        return {"ok": True}

    app = Starlette(
        routes=[*auth_routes(fob), Route("/login", login, methods=["POST"]), Route("/me", me),
                Route("/admin", admin), Route("/action", action, methods=["POST"]),
                Route("/confirmed", policy(max_staleness=0)), Route("/fresh", policy(fresh=600)),
                Route("/strong", policy(level=2)), Route("/graced", policy(outage_grace=GRACE))],
        middleware=[Middleware(KeyfobMiddleware, fob=fob)], lifespan=_lifespan(fob))
    with TestClient(app) as client:
        yield _HttpxClient(client)


@framework("fastapi")
@contextmanager
def fastapi_client(fob: Keyfob) -> Iterator[Client]:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from keyfob import Session
    from keyfob.fastapi import install, require_role, require_session, sign_in

    app = FastAPI(lifespan=_lifespan(fob))
    install(app, fob)

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        body = await request.json()
        issued = await sign_in(request, body["user"], {"role": body.get("role", "user"), "name": "Ada"},
                               remember=body.get("remember", True), amr=body.get("amr", ()))
        return {"id": issued.session.id}

    @app.get("/me")
    async def me(session: Session = Depends(require_session)) -> dict[str, Any]:
        return {"user": session.user_id}

    @app.get("/confirmed")
    async def confirmed(session: Session = Depends(require_session(max_staleness=0))) -> dict[str, Any]:
        return {"user": session.user_id}

    @app.get("/fresh")
    async def fresh(session: Session = Depends(require_session(fresh=600))) -> dict[str, Any]:
        return {"user": session.user_id}

    @app.get("/strong")
    async def strong(session: Session = Depends(require_session(level=2))) -> dict[str, Any]:
        return {"user": session.user_id}

    @app.get("/graced")
    async def graced(session: Session = Depends(require_session(outage_grace=GRACE))) -> dict[str, Any]:
        return {"user": session.user_id}

    @app.get("/admin", dependencies=[Depends(require_role("admin"))])
    async def admin() -> dict[str, Any]:
        return {"ok": True}

    @app.post("/action", dependencies=[Depends(require_session)])
    async def action() -> dict[str, Any]:
        return {"ok": True}

    with TestClient(app) as client:
        yield _HttpxClient(client)


# -- Flask: werkzeug's test client -------------------------------------------------------------------

_SENT_COOKIES = "keyfob.test.cookie_headers"


def _joining_cookie_headers(wsgi_app: Any) -> Any:
    """Werkzeug's test client replaces a request's own ``Cookie`` headers with its jar's; this puts
    them back as a WSGI server passes repeated headers on: joined with ``", "`` (after the jar's)."""
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        sent = environ.pop(_SENT_COOKIES, None)
        if sent:
            environ["HTTP_COOKIE"] = ", ".join([environ["HTTP_COOKIE"], *sent] if environ.get("HTTP_COOKIE")
                                               else sent)
        return wsgi_app(environ, start_response)
    return app


class _FlaskClient:
    base_url = "http://localhost"

    def __init__(self, client: Any) -> None:
        self.client = client

    def request(self, method: str, path: str, *, headers: Headers | None = None, json: Any = None,
                form: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
        sent = [v for k, v in headers or [] if k.lower() == "cookie"]
        rest = [(k, v) for k, v in headers or [] if k.lower() != "cookie"]
        r = self.client.open(path, method=method, headers=rest, json=json,
                             data=raw if raw is not None else form,
                             environ_overrides={_SENT_COOKIES: sent} if sent else None)
        return Reply(status=r.status_code, body=_decode(r.get_data()),
                     headers={k.lower(): v for k, v in reversed(list(r.headers.items()))},
                     set_cookies=r.headers.getlist("Set-Cookie"), vary=r.headers.get("Vary"))

    def cookies(self) -> dict[str, str]:
        return {c.key: c.value for c in self.client._cookies.values()}

    def set_cookie(self, name: str, value: str) -> None:
        self.client.set_cookie(name, value)

    def clear_cookies(self) -> None:
        self.client._cookies.clear()


@framework("flask")
@contextmanager
def flask_client(fob: Keyfob) -> Iterator[Client]:
    from flask import Flask, request

    from keyfob.flask import (
        KeyfobFlask,
        current_session,
        login_required,
        require_session,
        role_required,
        sign_in,
    )

    app = Flask(__name__)
    kf = KeyfobFlask(app, fob)
    app.wsgi_app = _joining_cookie_headers(app.wsgi_app)  # type: ignore[method-assign]

    @app.post("/login")
    def login() -> dict[str, Any]:
        body = request.get_json()
        issued = sign_in(body["user"], {"role": body.get("role", "user"), "name": "Ada"},
                         remember=body.get("remember", True), amr=body.get("amr", ()))
        return {"id": issued.session.id}

    @app.get("/confirmed")
    @require_session(max_staleness=0)
    def confirmed() -> dict[str, Any]:
        return {"user": current_session().user_id}  # type: ignore[union-attr]

    @app.get("/fresh")
    @require_session(fresh=600)
    def fresh() -> dict[str, Any]:
        return {"user": current_session().user_id}  # type: ignore[union-attr]

    @app.get("/strong")
    @require_session(level=2)
    def strong() -> dict[str, Any]:
        return {"user": current_session().user_id}  # type: ignore[union-attr]

    @app.get("/graced")
    @require_session(outage_grace=GRACE)
    def graced() -> dict[str, Any]:
        return {"user": current_session().user_id}  # type: ignore[union-attr]

    @app.get("/me")
    @login_required
    def me() -> dict[str, Any]:
        return {"user": current_session().user_id}  # type: ignore[union-attr]

    @app.get("/admin")
    @role_required("admin")
    def admin() -> dict[str, Any]:
        return {"ok": True}

    @app.post("/action")
    @login_required
    def action() -> dict[str, Any]:
        return {"ok": True}

    try:
        yield _FlaskClient(app.test_client())
    finally:
        kf.close()


# -- Django: django.test.Client (WSGI) and AsyncClient (ASGI), in django_frameworks.py ------------------

from . import django_frameworks  # noqa: E402,F401  (registers django-wsgi and django-asgi)
