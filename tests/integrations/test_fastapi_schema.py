"""schemathesis against a FastAPI app's OpenAPI schema, signed in: no undocumented status, no 5xx."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import schemathesis
from fastapi import Depends, FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from keyfob import Keyfob, Session
from keyfob.fastapi import install, require_role, require_session

SECRET = "kf-schema-secret-3Rt7Yp1Qw5Zx9Cv2Bn6Mk4Lj8Hg0Fd3Sa7Ee1Ii5Oo9"


def make_app(store: str) -> tuple[FastAPI, Keyfob]:
    fob = Keyfob(strategy="hybrid", secret=SECRET, store=store)
    app = FastAPI()
    install(app, fob)

    @app.get("/me")
    async def me(session: Session = Depends(require_session)) -> dict[str, Any]:
        return {"user": session.user_id}

    @app.post("/notes/{note_id}", dependencies=[Depends(require_role("admin"))])
    async def edit(note_id: int) -> dict[str, int]:
        return {"id": note_id}

    return app, fob


def test_schema_declares_the_security_schemes_and_the_auth_routes(tmp_path: Path) -> None:
    app, _ = make_app(f"sqlite:///{tmp_path / 'kf.db'}")
    schema = app.openapi()
    assert set(schema["components"]["securitySchemes"]) == {"keyfobSession", "keyfobBearer"}
    me = schema["paths"]["/me"]["get"]
    assert {"keyfobSession": []} in me["security"] and {"keyfobBearer": []} in me["security"]
    assert {"401", "503"} <= set(me["responses"])
    assert {"401", "403", "503"} <= set(schema["paths"]["/notes/{note_id}"]["post"]["responses"])
    assert "/auth/sessions/{sid}" in schema["paths"] and "/auth/signout" in schema["paths"]
    hidden = FastAPI()
    install(hidden, Keyfob(secret=SECRET, store=f"sqlite:///{tmp_path / 'h.db'}"), include_in_schema=False)
    assert not any(p.startswith("/auth") for p in hidden.openapi()["paths"])


def test_schemathesis_finds_no_undocumented_status_and_no_5xx_signed_in(tmp_path: Path) -> None:
    app, fob = make_app(f"sqlite:///{tmp_path / 'kf.db'}")
    issued = asyncio.run(fob.create("u1", {"role": "admin"}, secure=False))
    cookie = "; ".join(f"{c.name}={c.value}" for c in issued.cookies)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        given(operation.as_strategy())(_fuzz(operation.label, cookie, failures))()
    assert not failures, "\n".join(failures)


def _fuzz(label: str, cookie: str, failures: list[str]) -> Any:
    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        response = case.call(headers={"cookie": cookie})
        try:
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
        except AssertionError as exc:
            failures.append(f"{label}: {exc}")

    return run
