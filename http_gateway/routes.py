"""HTTP routes read from the ``google.api.http`` annotations in the generated descriptors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor

_VERBS = ("get", "put", "post", "delete", "patch")
_PATH_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class HttpRoute:
    """One RPC's HTTP binding: ``verb path`` and where the request message comes from."""

    method: MethodDescriptor
    verb: str
    path: str
    body: str  # "*" (whole message), "" (path + query only) or a field name

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(_PATH_VARIABLE.findall(self.path))

    @property
    def query_fields(self) -> tuple[FieldDescriptor, ...]:
        """Scalar request fields not bound to the path or body, settable as query parameters."""
        if self.body == "*":
            return ()
        taken = set(self.path_fields) | {self.body}
        return tuple(
            f
            for f in self.method.input_type.fields
            if f.name not in taken
            and f.type != FieldDescriptor.TYPE_MESSAGE
            and not _is_repeated(f)
        )

    @property
    def upload_field(self) -> FieldDescriptor | None:
        """The request's single bytes field, if any: such RPCs also take multipart uploads."""
        if self.verb != "post" or self.body != "*":
            return None
        candidates = [
            f for f in self.method.input_type.fields
            if f.type == FieldDescriptor.TYPE_BYTES and not _is_repeated(f)
        ]
        return candidates[0] if len(candidates) == 1 else None


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def http_routes(services: Iterable[ServiceDescriptor]) -> list[HttpRoute]:
    """Every annotated RPC of ``services``; unannotated ones (streams) have no route."""
    routes = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule = options.Extensions[annotations_pb2.http]
            for binding in (rule, *rule.additional_bindings):
                routes.append(_route(method, binding))
    return routes


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule) -> HttpRoute:
    verb = rule.WhichOneof("pattern")
    if verb not in _VERBS:
        raise ValueError(f"{method.full_name}: unsupported HTTP pattern {verb!r}")
    path = getattr(rule, verb)
    leftover = _PATH_VARIABLE.sub("", path)
    if "{" in leftover or "}" in leftover:
        raise ValueError(f"{method.full_name}: only simple {{field}} path variables are supported: {path}")
    fields = method.input_type.fields_by_name
    for name in _PATH_VARIABLE.findall(path):
        if name not in fields:
            raise ValueError(f"{method.full_name}: path variable {{{name}}} is not a request field")
    if method.client_streaming or method.server_streaming:
        raise ValueError(f"{method.full_name}: streaming RPCs cannot have an HTTP binding here")
    return HttpRoute(method=method, verb=verb, path=path, body=rule.body)
