"""The console's door, as one aiohttp middleware: who is logged in, what they may do, and the
headers every answer carries.

- A request without a live login gets the login page (a live-update fetch gets 401, and the
  page's script then goes to the login page itself, saying the session ended).
- A write (POST) needs the operator role, the login's CSRF token in the form, and, when the
  browser says where the form came from (Origin), this console's own origin.
- Every answer: no caching, no framing, no sniffing, no referrer to other sites, and a content security
  policy that allows only this origin's own scripts and styles (no inline script at all), so
  that even markup that escaped escaping could not run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from meshwarden.registry.console.logins import Login, Logins

COOKIE: Final = "meshwarden_console"
LIVE_HEADER: Final = "X-Console-Live"
OPEN_PATHS: Final = frozenset({"/login", "/favicon.ico"})
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send Origin: null on posts
    "Cache-Control": "no-store",
}
LOGIN: Final = web.RequestKey("login", Login)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def login_of(request: web.Request) -> Login:
    """The request's login (the guard let it through only with one)."""
    try:
        return request[LOGIN]
    except KeyError:
        raise web.HTTPUnauthorized(text="log in first") from None


def guard(logins: Logins, *, tls: bool) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await _admit(request, handler, logins, tls=tls)
        except web.HTTPException as exc:  # answered as a plain response, with the same headers as any
            response = web.Response(status=exc.status, text=exc.text, headers=exc.headers)
        response.headers.update(SECURITY_HEADERS)
        if tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    return middleware


async def _admit(request: web.Request, handler: Handler, logins: Logins, *, tls: bool) -> web.StreamResponse:
    if request.path in OPEN_PATHS or request.path.startswith("/static/"):
        if request.method == "POST":
            _check_origin(request, tls=tls)
        return await handler(request)
    cookie = request.cookies.get(COOKIE, "")
    login = logins.find(cookie) if cookie else None
    if login is None:
        if request.headers.get(LIVE_HEADER):
            raise web.HTTPUnauthorized(text="your console session ended; log in again")
        raise web.HTTPSeeOther("/login?ended=1" if cookie else "/login")
    request[LOGIN] = login
    if request.method == "POST":
        _check_origin(request, tls=tls)
        form = await request.post()
        csrf = form.get("csrf")
        if not isinstance(csrf, str) or not login.carries(csrf):
            raise web.HTTPForbidden(text="this form is stale or was not sent by the console (CSRF token); reload it")
        if request.path != "/logout" and not login.may_act:
            raise web.HTTPForbidden(
                text=f"{login.user or login.actor} is logged in with the read-only viewer token: only the operator "
                "token may act (approve, deny, engage or lift kill switches)"
            )
    return await handler(request)


def _check_origin(request: web.Request, *, tls: bool) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not every browser sends it on same-origin posts; the CSRF token and SameSite still hold
    expected = f"{'https' if tls else 'http'}://{request.host}"
    if origin != expected:
        raise web.HTTPForbidden(text=f"a form from {origin[:100]} may not write to this console ({expected})")
