"""The console's web application (Starlette): one page, its static files, and a JSON endpoint per view.

The page asks ``/api/version`` every second and fetches its view again only when that view's
version moved, so it updates without a reload and an idle console costs next to nothing.
Everything the page loads is served from this package (``static/``): no CDN, no network, and
a Content-Security-Policy that allows nothing else.

Bound to the loopback address the console is the operator's own; bound to any other address
it asks for a login (HTTP Basic, ``BasicLogin``) on every request but ``/health``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from govbus.console import views
from govbus.console.live import Live

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store",
}
Scope = dict[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BasicLogin:
    """HTTP Basic login in front of the application; ``/health`` stays open for probes.
    Both names and passwords are compared in constant time."""

    def __init__(self, app: ASGI, username: str, password: str) -> None:
        self.app, self.username, self.password = app, username.encode(), password.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") == "/health" or self.admits(scope):
            await self.app(scope, receive, send)
            return
        refusal = Response("login required", status_code=401,
                           headers={"www-authenticate": 'Basic realm="govbus console", charset="UTF-8"'})
        await refusal(scope, receive, send)

    def admits(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            username, _, password = base64.b64decode(encoded, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(username, self.username) & hmac.compare_digest(password, self.password)


def _json(body: Any) -> JSONResponse:
    return JSONResponse(body, headers=SECURITY_HEADERS)


def application(live: Live, registry: Any, login: tuple[str, str] | None = None) -> ASGI:
    """The console over `live`; with `login` (name, password) every request must give it."""
    catalog = live.catalog

    def now() -> datetime:
        return datetime.now(timezone.utc)

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    def health(request: Request) -> Response:
        status = live.status()
        return JSONResponse(status, status_code=200 if status["status"] == "ready" else 503)

    def version(request: Request) -> Response:
        return _json(live.status())

    def lineage(request: Request) -> Response:
        chosen = views.LineageFilter(**{name: request.query_params.get(name, "").strip()
                                        for name in ("department", "library", "field", "state")})
        with live.lock:
            return _json(views.lineage(live.knowledge, catalog, registry, now(), chosen))

    def attention(request: Request) -> Response:
        with live.lock:
            return _json(views.attention(live.knowledge, registry, now()))

    def freshness(request: Request) -> Response:
        with live.lock:
            return _json(views.freshness(live.knowledge, catalog, now(), request.query_params.get("window", "1h"),
                                         request.query_params.get("department", "").strip()))

    def trace(request: Request) -> Response:
        entity = request.query_params.get("entity", "").strip()
        if not entity:
            return _json({"entity_id": "", "rows": [], "count": 0, "chains": [], "verification": None})
        verification = live.verification()
        with live.lock:
            return _json(views.trace(live.knowledge, verification, entity))

    routes = [Route("/", index), Route("/health", health), Route("/api/version", version),
              Route("/api/lineage", lineage), Route("/api/attention", attention), Route("/api/freshness", freshness),
              Route("/api/trace", trace), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app: ASGI = Starlette(routes=routes)
    return BasicLogin(app, *login) if login else app
