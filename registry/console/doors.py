"""Logging in and out of the console.

The login form takes a registry token (the operator token, which may act, or the viewer
token, which may only look) and the person's name (a claim, kept in the audit log beside the
credential, as the CLI's $USER is). Tokens are compared in constant time and never logged.
Failed attempts are counted per client address (registry.console.login_limits) and audited;
past the limit the form answers 429 with when to try again, without checking the token.
The session cookie is HttpOnly, SameSite=Strict, and Secure when the console serves TLS.
"""

from __future__ import annotations

from typing import Final

import jinja2
from aiohttp import web

from meshwarden.registry.audit import Audit
from meshwarden.registry.console.guard import COOKIE
from meshwarden.registry.console.login_limits import FailedLogins
from meshwarden.registry.console.logins import MAX_AGE_S, MAX_USER_CHARS, Logins
from meshwarden.registry.console.render import page
from meshwarden.registry.operators import OperatorCredential

MAX_TOKEN_CHARS: Final = 200


class Doors:
    def __init__(
        self,
        env: jinja2.Environment,
        logins: Logins,
        limits: FailedLogins,
        credentials: tuple[OperatorCredential, ...],
        audit: Audit,
        *,
        tls: bool,
    ) -> None:
        self._env, self._logins, self._limits = env, logins, limits
        self._credentials, self._audit, self._tls = credentials, audit, tls

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/login", self.form), web.post("/login", self.log_in), web.post("/logout", self.log_out)]

    async def form(self, request: web.Request) -> web.Response:
        ended = request.query.get("ended") == "1"
        return self._form(request, "Your console session ended: log in again." if ended else "")

    async def log_in(self, request: web.Request) -> web.StreamResponse:
        address = request.remote or "unknown"
        form = await request.post()
        token, user = str(form.get("token", ""))[:MAX_TOKEN_CHARS].strip(), str(form.get("user", ""))
        user = user.strip()[:MAX_USER_CHARS]
        verdict = self._limits.check(address)
        if not verdict.allowed:
            wait_s = max(int(verdict.retry_after_s) + 1, 1)
            response = self._form(
                request, f"Too many failed logins from {address}: try again in {wait_s} s.", status=429
            )
            response.headers["Retry-After"] = str(wait_s)
            return response
        credential = next((c for c in self._credentials if token and c.accepts(token)), None)
        if credential is None:
            self._limits.failed(address)
            await self._audit.record_by(
                f"console client {address}",
                "console.login.failed",
                "console",
                "the token is not this registry's operator or viewer token",
                claimed_user=user,
            )
            return self._form(
                request,
                "That is not this registry's operator or viewer token (the files operator.token and viewer.token "
                "in its data directory).",
                status=401,
            )
        login = self._logins.open(credential.role, credential.identity, user)
        await self._audit.record_by(
            credential.identity, "console.login", "console", "", f"{credential.role} from {address}", claimed_user=user
        )
        response = web.Response(status=303, headers={"Location": "/map"})
        response.set_cookie(
            COOKIE,
            login.session_id,
            httponly=True,
            samesite="Strict",
            secure=self._tls,
            path="/",
            max_age=int(MAX_AGE_S),
        )
        return response

    async def log_out(self, request: web.Request) -> web.StreamResponse:
        self._logins.close(request.cookies.get(COOKIE, ""))
        response = web.Response(status=303, headers={"Location": "/login"})
        response.del_cookie(COOKIE, path="/")
        return response

    def _form(self, request: web.Request, problem: str, *, status: int = 200) -> web.Response:
        return page(self._env, request, "login.html", None, {"problem": problem}, status=status)
