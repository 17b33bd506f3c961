"""The gateway's in-process backend: calls the API objects of this process directly, by method descriptor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from service.core.engine import EngineRef
from service.errors import NotFound


class InProcessBackend:
    """http_gateway.backends.RpcBackend over this process's API objects: same core, no network hop."""

    def __init__(self, apis: Mapping[str, object], engine: EngineRef) -> None:
        self._apis = apis  # service full name -> object with one method per RPC
        self._engine = engine

    async def call(self, method: MethodDescriptor, request: Message, timeout: float | None) -> Message:
        handler: Callable[..., Any] = getattr(self._apis[method.containing_service.full_name], method.name)
        return await handler(request, timeout)

    async def ready(self, model: str = "") -> bool:
        if not model:
            return self._engine.ready
        if not self._engine.ready:
            return False
        registry = self._engine.get().registry
        if model not in registry.names():
            raise NotFound(f"model {model!r} is not served")
        return registry.current(model) is not None

    async def close(self) -> None:
        return None
