"""Pages from Jinja2 templates (registry/console/templates) with autoescaping on for every
template: whatever agents supply (names, arguments, reasons, error messages) reaches the page
as text, never as markup. A live-update fetch gets only the page's `live` block."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from meshwarden.clock import iso_utc
from meshwarden.registry.console.guard import LIVE_HEADER
from meshwarden.registry.console.logins import Login

TEMPLATES: Final = Path(__file__).parent / "templates"
LIVE_EVERY_MS: Final = 2000


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=usd, when=when, pct=pct, ms=ms, pretty_json=pretty_json)
    return env


def usd(micro: int) -> str:
    return f"${micro / 1_000_000:,.6f}"


def when(seconds: float | None) -> str:
    return iso_utc(seconds) if seconds else "-"


def pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def ms(value: float) -> str:
    return f"{value:.1f} ms"


def pretty_json(text: str | bytes) -> str:
    """Arguments as a reviewer reads them: indented when they are JSON, as sent otherwise."""
    raw = text.decode(errors="replace") if isinstance(text, bytes) else text
    try:
        return json.dumps(json.loads(raw), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return raw


def page(
    env: jinja2.Environment,
    request: web.Request,
    template: str,
    login: Login | None,
    values: Mapping[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    compiled = env.get_template(template)
    context = {"login": login, "live_every_ms": LIVE_EVERY_MS, "path": request.path_qs, "notices": [], **values}
    if request.headers.get(LIVE_HEADER) and "live" in compiled.blocks:
        body = "".join(compiled.blocks["live"](compiled.new_context(context)))
    else:
        if login is not None:  # said once, on the next whole page
            context["notices"], login.notices = [*context["notices"], *login.notices], []
        body = compiled.render(context)
    return web.Response(text=body, content_type="text/html", charset="utf-8", status=status)
