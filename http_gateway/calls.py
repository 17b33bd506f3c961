"""Which RPC each HTTP route calls: declared on the route, read by the middleware to apply the access table.

Every route that calls an RPC says so in its OpenAPI operation
(``x-grpc-method: /package.Service/Method``, also documenting the mapping);
the middleware finds the route a request matches, as the router will, and asks
service/contract/access.py about that RPC before any of the body is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.routing import APIRoute
from google.protobuf.descriptor import MethodDescriptor
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from service.contract.services import method_path

RPC_EXTENSION = "x-grpc-method"


def rpc_extra(method: MethodDescriptor | str, **extra: Any) -> dict[str, Any]:
    """``openapi_extra`` for a route that calls ``method`` (a descriptor or a ``/package.Service/Method`` path)."""
    return {**extra, RPC_EXTENSION: method if isinstance(method, str) else method_path(method)}


class RouteCalls:
    """The RPC behind a request: that of the first route matching it fully (path and verb)."""

    def __init__(self, routes: Sequence[BaseRoute] = ()) -> None:
        self.routes = routes  # the app's own list: routes added after this object are seen too
        self._table: list[tuple[APIRoute, str]] | None = None

    def _calls(self) -> list[tuple[APIRoute, str]]:
        if self._table is None:  # built on the first request, once every route is in place
            self._table = [
                (route, str(extra[RPC_EXTENSION]))
                for route in self.routes
                if isinstance(route, APIRoute) and RPC_EXTENSION in (extra := route.openapi_extra or {})
            ]
        return self._table

    def method(self, scope: Scope) -> str | None:
        """The ``/package.Service/Method`` the request's route calls; None for pages and unknown routes."""
        for route, method in self._calls():
            if route.matches(scope)[0] is Match.FULL:
                return method
        return None
