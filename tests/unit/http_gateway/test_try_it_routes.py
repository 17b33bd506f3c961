"""The try-it page's routes (GET / and its assets): served same-origin only, left out of OpenAPI, through the app itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from http_gateway.app import create_app
from http_gateway.try_it import ROUTES, STATIC, add_try_it_page


class _NoBackend:
    """The page's routes never call the backend."""

    async def call(self, method: MethodDescriptor, request: Message, timeout: float | None) -> Message:
        raise AssertionError("the try-it routes must not call the backend")

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None

def test_page_and_assets_are_served_same_origin_only_and_left_out_of_openapi() -> None:
    app = create_app(_NoBackend(), max_request_bytes=1 << 20, request_timeout_s=5)
    add_try_it_page(app)
    with TestClient(app) as client:
        for route, name in ROUTES.items():
            response = client.get(route)
            assert response.status_code == 200, route
            assert response.content == (STATIC / name).read_bytes()
            assert "script-src 'self'" in response.headers["content-security-policy"]
        assert client.get("/").headers["content-type"].startswith("text/html")
        assert client.get("/try-it/try_it.js").headers["content-type"].startswith("text/javascript")
        paths = client.get("/openapi.json").json()["paths"]
    assert not set(ROUTES) & set(paths), "the page's routes belong to no API"
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), f"{path.name} links off-site"
