"""The try-it page at ``GET /``: static HTML, CSS and JS that call ``POST /v1/classify``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
ASSET_PREFIX = "/try-it"
ROUTES = {"/": "index.html", f"{ASSET_PREFIX}/try_it.js": "try_it.js", f"{ASSET_PREFIX}/try_it.css": "try_it.css"}
# Static files anyone may load: the page's own API calls carry the token the person types in.
PAGES = frozenset(ROUTES)
_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8"}
# Everything from this origin only: the page can never pull a script from a CDN, and a
# compromised asset could not send the images elsewhere. blob: is the local preview of the
# chosen file, data: the empty favicon; element.style (the bars' widths) is CSSOM, which
# style-src does not restrict.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate: a new release's page and assets are seen at once
}


def _handler(path: Path) -> Callable[[], Awaitable[Response]]:
    # Read once, when the app is built: a missing file stops start-up, not a visitor.
    body, media_type = path.read_bytes(), _MEDIA_TYPES[path.suffix]

    async def serve() -> Response:
        return Response(body, media_type=media_type, headers=_HEADERS)

    return serve


def add_try_it_page(app: FastAPI) -> None:
    """Register ``GET /`` and its two assets; none of them appears in the OpenAPI document."""
    for route, name in ROUTES.items():
        app.add_api_route(route, _handler(STATIC / name), methods=["GET"], include_in_schema=False)
