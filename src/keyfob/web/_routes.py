"""The ``/auth`` routes' logic, once, framework-free: each returns ``(status, JSON body)``.

``keyfob.starlette``/``keyfob.fastapi`` await these; ``keyfob.flask`` runs them on its per-process
loop. Responses are ``Cache-Control: no-store`` (the adapters add it) except the JWKS document.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import InvalidToken

if TYPE_CHECKING:
    from ..engine import Keyfob
    from ._request import RequestState

__all__ = ["AuthRoutes", "Reply"]

Reply = tuple[int, Any]


class AuthRoutes:
    """``GET session``, ``GET sessions``, ``DELETE sessions/{id}``, ``POST sessions/revoke-others``,
    ``POST signout``, ``POST refresh``, ``GET csrf`` and the JWKS document, for one engine."""

    def __init__(self, fob: Keyfob) -> None:
        self.fob = fob

    async def session(self, req: RequestState) -> Reply:
        s = req.session
        return 200, None if s is None else s.to_authjs()

    async def sessions(self, req: RequestState) -> Reply:
        s = req.require()
        return 200, [i.to_json() for i in await self.fob.list_sessions(s.user_id, current=s.id)]

    async def delete_session(self, req: RequestState, sid: str) -> Reply:
        s = req.require()
        info = await self.fob.get_session(sid)
        if info is None or info.user_id != s.user_id:
            return 404, {"error": "not_found", "detail": "no such session among yours"}
        await self.fob.revoke(sid)
        if sid == s.id:
            req.signed_out(await self.fob.sign_out(req.cookies, secure=req.secure))
        return 200, {"revoked": sid}

    async def revoke_others(self, req: RequestState) -> Reply:
        req.require()
        n, reissued = await self.fob.revoke_others(req.cookies, secure=req.secure)
        if reissued is not None:
            req.replaced(reissued)
        return 200, {"revoked": n}

    async def signout(self, req: RequestState) -> Reply:
        req.signed_out(await self.fob.sign_out(req.cookies, secure=req.secure))
        return 200, {"ok": True}

    async def refresh(self, req: RequestState, content_type: str | None, body: bytes) -> Reply:
        token: str | None = None
        if (content_type or "").startswith("application/json"):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                raise InvalidToken("the request body is not JSON",
                                   hint='send {"refresh_token": "..."}') from None
            if isinstance(data, dict) and isinstance(data.get("refresh_token"), str):
                token = data["refresh_token"]
        issued = await self.fob.refresh(token, cookies=req.cookies, secure=req.secure,
                                        meta=req.meta)
        # Tokens go in the body only to a client that sent its refresh token in the body (mobile,
        # CLI); a browser refreshing with its cookie gets them as HttpOnly cookies only (ASVS 3.3.4).
        in_body = token is not None
        if in_body:
            req.session = issued.session
        else:
            req.replaced(issued)
        return 200, {**issued.session.to_authjs(), "access_token": issued.access_token if in_body else None,
                     "refresh_token": issued.refresh_token if in_body else None,
                     "token_type": "Bearer", "expires_in": int(self.fob.settings.access_ttl)}

    async def update(self, req: RequestState, content_type: str | None, body: bytes) -> Reply:
        """``POST session``: the client asks to change its session data (Auth.js's ``update()``:
        ``{"data": {...}}`` or the object itself); the app's ``on_update`` callback decides."""
        req.require()
        try:
            sent = json.loads(body or b"{}") if (content_type or "").startswith("application/json") else None
        except ValueError:
            sent = None
        if not isinstance(sent, dict):
            return 400, {"error": "bad_request", "detail": 'send a JSON object: {"data": {...}}'}
        requested = sent.get("data", sent)
        if not isinstance(requested, dict):
            return 400, {"error": "bad_request", "detail": '"data" must be a JSON object'}
        issued = await self.fob.update_current(req.cookies, requested, secure=req.secure)
        req.replaced(issued)
        return 200, issued.session.to_authjs()

    async def csrf(self, req: RequestState) -> Reply:
        return 200, {"csrfToken": req.csrf_token()}

    def jwks(self) -> Reply:
        return 200, self.fob.jwks()
