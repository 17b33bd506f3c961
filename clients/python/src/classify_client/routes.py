"""HTTP routes of classify.v1, read from the ``google.api.http`` annotations in the generated descriptor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from google.api import annotations_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

_PATH_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class HttpRoute:
    """One RPC's HTTP binding: ``verb path`` and whether the request is the JSON body."""

    method: MethodDescriptor
    verb: str
    path: str
    body: str  # "*" (the whole message) or "" (path and query parameters only)

    def request_parts(self, request: Message) -> tuple[str, dict[str, str]]:
        """The filled-in path and the query parameters (non-empty scalar fields not in the path)."""
        path, taken = self.path, set(_PATH_VARIABLE.findall(self.path))
        for name in taken:
            path = path.replace("{" + name + "}", quote(str(getattr(request, name)), safe=""))
        if self.body == "*":
            return path, {}
        params = {
            f.json_name: str(getattr(request, f.name))
            for f in self.method.input_type.fields
            if f.name not in taken and f.type != FieldDescriptor.TYPE_MESSAGE and not f.is_repeated
            and getattr(request, f.name)
        }
        return path, params


def http_routes(service: ServiceDescriptor) -> dict[str, HttpRoute]:
    """The primary binding of every annotated RPC, by method name (streams have none)."""
    routes = {}
    for method in service.methods:
        options = method.GetOptions()
        if options.HasExtension(annotations_pb2.http):
            rule = options.Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            if verb not in ("get", "put", "post", "delete", "patch") or rule.body not in ("", "*"):
                raise ValueError(f"{method.full_name}: HTTP binding {rule} is not supported by this client")
            routes[method.name] = HttpRoute(method, verb.upper(), getattr(rule, verb), rule.body)
    return routes
