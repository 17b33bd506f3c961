"""Python clients of ``classify.v1.ClassifierService``: over gRPC or the HTTP gateway, sync or asyncio.

    with Client("127.0.0.1:50051") as client:                          # gRPC
        top = client.classify(open("cat.jpg", "rb").read(), top_k=3)
    async with AsyncClient("http://127.0.0.1:8000", transport="http") as client:
        top = await client.classify(image)

Results are the betterproto2 pydantic models of ``classify_client.models.classify.v1``;
every failure is a :class:`ClassifyError` carrying the canonical gRPC code name
(``INVALID_ARGUMENT``...) whichever the transport. UNAVAILABLE, and overload
(RESOURCE_EXHAUSTED with a retry hint / HTTP 429), are retried with exponential
backoff up to :attr:`RetryPolicy.max_attempts`, all within the call's deadline.
The gRPC method paths and the HTTP routes are read from the generated descriptor.
Where OpenTelemetry is installed (it is never required), each call carries the
caller's current trace context (W3C ``traceparent``), so the server's spans join
the caller's trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import betterproto2
import grpc
import grpc.aio
import httpx
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as PbMessage
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from classify_client._proto.classify.v1 import classify_pb2 as pb
from classify_client.models.classify import v1 as models
from classify_client.routes import HttpRoute, http_routes

logger = logging.getLogger(__name__)

Transport = Literal["grpc", "http"]
M = TypeVar("M", bound=betterproto2.Message)

_SERVICE = pb.DESCRIPTOR.services_by_name["ClassifierService"]
# Paths and verbs come from the proto's google.api.http annotations, as the gateway's do.
_ROUTES: dict[str, HttpRoute] = http_routes(_SERVICE)
# Where an HTTP answer carries no google.rpc.Status body (a proxy's error page), as grpc-gateway maps.
_HTTP_CODES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
# A down server is retried every few seconds at most, not after gRPC's default backoff of up to 120 s.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class ClassifyError(Exception):
    """A failed call: ``code`` is the canonical gRPC code name, on both transports."""

    def __init__(
        self, code: str, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        #: Seconds the server asked to wait before retrying (overload only).
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """UNAVAILABLE, or overload: RESOURCE_EXHAUSTED with a retry hint (not a too-large input)."""
        return self.code == "UNAVAILABLE" or (self.code == "RESOURCE_EXHAUSTED" and self.retry_after is not None)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for retryable errors, at most ``max_attempts`` tries in all."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, error: ClassifyError, remaining_s: float | None) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up with ``error``."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        backoff = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        backoff *= 1.0 + random.uniform(-self.jitter, self.jitter)
        if error.retry_after is not None:
            backoff = max(backoff, error.retry_after)
        if remaining_s is not None and backoff >= remaining_s:
            return None  # the deadline would pass while waiting
        return backoff


NO_RETRY = RetryPolicy(max_attempts=1)


def code_name(code: int) -> str:
    """The canonical name of a google.rpc.Code number (3 -> ``INVALID_ARGUMENT``)."""
    try:
        return code_pb2.Code.Name(code)
    except ValueError:
        return "UNKNOWN"


def json_body(message: PbMessage) -> bytes:
    """A request message in proto3 JSON (camelCase, bytes as base64, defaults left out), compact."""
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def to_proto_json(message: betterproto2.Message) -> dict[str, Any]:
    """A classify.v1 model in canonical proto3 JSON, as json_format writes it (float32 printed short)."""
    pb_class = getattr(pb, type(message).__name__)
    return json_format.MessageToDict(pb_class.FromString(bytes(message)))


def error_from_http(response: httpx.Response) -> ClassifyError:
    """The google.rpc.Status JSON body of an HTTP error, or a code from the HTTP status when there is none.

    Retry advice is the Retry-After header (seconds), on any status that carries one.
    """
    retry_after = None
    if "retry-after" in response.headers:
        try:
            retry_after = float(response.headers["retry-after"])
        except ValueError:
            retry_after = 0.0
    try:
        body = response.json()
        code, message = code_name(int(body["code"])), str(body.get("message", ""))
    except (ValueError, KeyError, TypeError):
        code = _HTTP_CODES.get(response.status_code, "UNKNOWN")
        message = f"HTTP {response.status_code}: {response.text[:200]}"
    return ClassifyError(code, message, http_status=response.status_code, retry_after=retry_after)


def _grpc_error(error: grpc.RpcError) -> ClassifyError:
    """The call's status; retry advice from google.rpc.RetryInfo in its rich status (grpc-status-details-bin)."""
    call: Any = error  # sync errors are grpc.Call too; aio ones are AioRpcError
    retry_after = None
    for key, value in call.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                details = status_pb2.Status.FromString(value).details
            except DecodeError:
                continue
            for detail in details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    retry_after = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return ClassifyError(call.code().name, call.details() or "", retry_after=retry_after)


def _http_error(error: httpx.HTTPError, base_url: str) -> ClassifyError:
    if isinstance(error, httpx.TimeoutException):
        return ClassifyError("DEADLINE_EXCEEDED", f"no answer from {base_url} in time: {error!r}")
    return ClassifyError("UNAVAILABLE", f"cannot reach {base_url}: {error!r}")


def _to_model(model_class: type[M], message: PbMessage) -> M:
    # Wire bytes, so both transports give identical values (float32 probabilities included).
    return model_class.parse(message.SerializeToString())


def _batch_outcomes(response: pb.ClassifyBatchResponse) -> list[models.ClassifyResponse | ClassifyError]:
    return [
        ClassifyError(code_name(result.error.code), result.error.message)
        if result.HasField("error")
        else _to_model(models.ClassifyResponse, result.response)
        for result in response.results
    ]


def _batch_request(images: Sequence[bytes], top_k: int, model: str) -> pb.ClassifyBatchRequest:
    return pb.ClassifyBatchRequest(
        requests=[pb.ClassifyRequest(image=image, top_k=top_k, model=model) for image in images]
    )


def _http_parts(method: str, request: PbMessage) -> tuple[str, str, bytes | None, dict[str, str]]:
    """Verb, path, body and query parameters of ``method`` from its HTTP annotation."""
    route = _ROUTES[method]
    path, params = route.request_parts(request)
    return route.verb, path, json_body(request) if route.body == "*" else None, params


def _unary_stubs(channel: grpc.Channel | grpc.aio.Channel) -> dict[str, Any]:
    """A callable per unary RPC of the service, its path and message classes read from the descriptor."""
    return {
        method.name: channel.unary_unary(
            f"/{_SERVICE.full_name}/{method.name}",
            request_serializer=getattr(pb, method.input_type.name).SerializeToString,
            response_deserializer=getattr(pb, method.output_type.name).FromString,
        )
        for method in _SERVICE.methods
        if not (method.client_streaming or method.server_streaming)
    }


def _http_timeout(timeout: float | None) -> httpx.Timeout:
    return httpx.Timeout(timeout)


def _ssl_context(root_ca: Path | None, client_cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(root_ca) if root_ca else None)
    if client_cert:
        context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    return context


@dataclass(frozen=True)
class _Options:
    """What both clients share: where, how, credentials and policies."""

    target: str
    transport: Transport
    token: str | None
    root_ca: Path | None
    client_cert: tuple[Path, Path] | None
    tls: bool
    timeout: float | None
    retry: RetryPolicy

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def grpc_credentials(self) -> grpc.ChannelCredentials | None:
        if not (self.tls or self.root_ca or self.client_cert):
            return None
        key, chain = (self.client_cert[1].read_bytes(), self.client_cert[0].read_bytes()) if self.client_cert else (None, None)
        roots = self.root_ca.read_bytes() if self.root_ca else None
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)

    def http_kwargs(self) -> dict[str, Any]:
        if not self.target.startswith(("http://", "https://")):
            raise ValueError(f"the HTTP transport needs a base URL such as http://127.0.0.1:8000; got {self.target!r}")
        verify: ssl.SSLContext | bool = True
        if self.root_ca or self.client_cert:
            verify = _ssl_context(self.root_ca, self.client_cert)
        return {"base_url": self.target, "headers": dict(self.metadata), "verify": verify}


def _options(
    target: str, transport: Transport, token: str | None, root_ca: str | Path | None,
    client_cert: tuple[str | Path, str | Path] | None, tls: bool, timeout: float | None, retry: RetryPolicy,
) -> _Options:
    if transport not in ("grpc", "http"):
        raise ValueError(f"transport must be 'grpc' or 'http'; got {transport!r}")
    if retry.max_attempts < 1:
        raise ValueError(f"RetryPolicy.max_attempts must be at least 1; got {retry.max_attempts}")
    cert = (Path(client_cert[0]), Path(client_cert[1])) if client_cert else None
    return _Options(target, transport, token, Path(root_ca) if root_ca else None, cert, tls, timeout, retry)


_propagate: Any = None  # opentelemetry.propagate once looked up; False where OpenTelemetry is not installed


def _trace_context() -> dict[str, str]:
    """The caller's current trace context as W3C headers (empty without OpenTelemetry or without a span)."""
    global _propagate
    if _propagate is None:
        try:
            from opentelemetry import propagate

            _propagate = propagate
        except ImportError:
            _propagate = False
    if _propagate is False:
        return {}
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return carrier


def _grpc_metadata(options: _Options) -> tuple[tuple[str, str], ...]:
    context = _trace_context()
    return (*options.metadata, *context.items()) if context else options.metadata


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self._at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())


def _retry_delay(options: _Options, method: str, attempt: int, error: ClassifyError, deadline: _Deadline) -> float | None:
    delay = options.retry.delay(attempt, error, deadline.remaining())
    if delay is not None:
        logger.info(
            "%s %s failed with %s (%s); retry %d of %d in %.2f s",
            options.transport, method, error.code, error.message, attempt, options.retry.max_attempts - 1, delay,
        )
    return delay


class Client:
    """Blocking client. ``target`` is HOST:PORT for gRPC, a base URL (http[s]://host:port) for HTTP.

    ``token`` is sent as ``authorization: Bearer ...``; ``root_ca`` (PEM file) turns on TLS and
    trusts that CA, ``client_cert`` = (chain PEM, key PEM) adds a client certificate (mTLS),
    ``tls=True`` uses TLS with the system's roots (gRPC; HTTP follows the URL's scheme).
    ``timeout`` is each call's default deadline in seconds, retries and backoff included.
    """

    def __init__(
        self,
        target: str,
        *,
        transport: Transport = "grpc",
        token: str | None = None,
        root_ca: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        tls: bool = False,
        timeout: float | None = 30.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._options = _options(target, transport, token, root_ca, client_cert, tls, timeout, retry)
        self._channel: grpc.Channel | None = None
        self._http: httpx.Client | None = None
        if transport == "grpc":
            credentials = self._options.grpc_credentials()
            self._channel = (
                grpc.secure_channel(target, credentials, _CHANNEL_OPTIONS)
                if credentials
                else grpc.insecure_channel(target, _CHANNEL_OPTIONS)
            )
            self._stubs = _unary_stubs(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)
        else:
            self._http = httpx.Client(**self._options.http_kwargs())

    def classify(
        self, image: bytes, top_k: int = 0, model: str = "", timeout: float | None = None, model_version: str = ""
    ) -> models.ClassifyResponse:
        """The top-K classes of one encoded image (``top_k`` 0: the server's default, 5; ``model_version`` pins one)."""
        request = pb.ClassifyRequest(image=image, top_k=top_k, model=model, model_version=model_version)
        return _to_model(models.ClassifyResponse, self._call("Classify", request, timeout))

    def classify_batch(
        self, images: Sequence[bytes], top_k: int = 0, model: str = "", timeout: float | None = None
    ) -> list[models.ClassifyResponse | ClassifyError]:
        """One result or one error per image, in order."""
        response = self._call("ClassifyBatch", _batch_request(images, top_k, model), timeout)
        return _batch_outcomes(response)  # type: ignore[arg-type]

    def list_models(self, timeout: float | None = None) -> models.ListModelsResponse:
        """Every served model and the default one."""
        return _to_model(models.ListModelsResponse, self._call("ListModels", pb.ListModelsRequest(), timeout))

    def get_model(self, name: str, timeout: float | None = None) -> models.ModelInfo:
        """One served model's metadata."""
        response = self._call("GetModel", pb.GetModelRequest(name=name), timeout)
        return _to_model(models.ModelInfo, response.model)  # type: ignore[attr-defined]

    def load_model(self, name: str, version: str = "", timeout: float | None = None) -> models.ModelInfo:
        """Load a model of the server's model repository (every version, or one); returns its versions' states."""
        response = self._call("LoadModel", pb.LoadModelRequest(name=name, version=version), timeout)
        return _to_model(models.ModelInfo, response.model)  # type: ignore[attr-defined]

    def unload_model(self, name: str, version: str = "", timeout: float | None = None) -> models.ModelInfo:
        """Unload a model (every version, or one); returns what remains of it."""
        response = self._call("UnloadModel", pb.UnloadModelRequest(name=name, version=version), timeout)
        return _to_model(models.ModelInfo, response.model)  # type: ignore[attr-defined]

    def health(self, timeout: float | None = 5.0) -> str:
        """Readiness as grpc.health.v1 names it: ``SERVING`` once the model is warm, else ``NOT_SERVING``."""
        if self._http is not None:
            try:
                response = self._http.get("/readyz", timeout=_http_timeout(timeout))
            except httpx.HTTPError as error:
                raise _http_error(error, self._options.target) from None
            return _readiness(response)
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(), timeout=timeout, metadata=self._options.metadata)
        except grpc.RpcError as error:
            raise _grpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def ready(self, timeout: float | None = 5.0) -> bool:
        """True when the server answers SERVING; False when not ready or unreachable."""
        try:
            return self.health(timeout) == "SERVING"
        except ClassifyError:
            return False

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.2) -> None:
        """Block until the server is ready; DEADLINE_EXCEEDED after ``timeout`` seconds."""
        deadline = _Deadline(timeout)
        while not self.ready(min(5.0, max(0.1, deadline.remaining() or 0.1))):
            if not deadline.remaining():
                raise ClassifyError("DEADLINE_EXCEEDED", f"{self._options.target} not ready after {timeout} s")
            time.sleep(interval)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, request: PbMessage, timeout: float | None) -> PbMessage:
        deadline = _Deadline(self._options.timeout if timeout is None else timeout)
        attempt = 1
        while True:
            try:
                return self._attempt(method, request, deadline.remaining())
            except ClassifyError as error:
                delay = _retry_delay(self._options, method, attempt, error, deadline)
                if delay is None:
                    raise
            time.sleep(delay)
            attempt += 1

    def _attempt(self, method: str, request: PbMessage, timeout: float | None) -> PbMessage:
        if self._http is None:
            try:
                return self._stubs[method](request, timeout=timeout, metadata=_grpc_metadata(self._options))
            except grpc.RpcError as error:
                raise _grpc_error(error) from None
        verb, path, body, params = _http_parts(method, request)
        headers = {"content-type": "application/json"} if body is not None else {}
        headers.update(_trace_context())
        try:
            response = self._http.request(verb, path, content=body, params=params, headers=headers, timeout=_http_timeout(timeout))
        except httpx.HTTPError as error:
            raise _http_error(error, self._options.target) from None
        return _http_message(method, response)


class AsyncClient:
    """The asyncio twin of :class:`Client` (grpc.aio or httpx.AsyncClient); create it inside the event loop."""

    def __init__(
        self,
        target: str,
        *,
        transport: Transport = "grpc",
        token: str | None = None,
        root_ca: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        tls: bool = False,
        timeout: float | None = 30.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._options = _options(target, transport, token, root_ca, client_cert, tls, timeout, retry)
        self._channel: grpc.aio.Channel | None = None
        self._http: httpx.AsyncClient | None = None
        if transport == "grpc":
            credentials = self._options.grpc_credentials()
            self._channel = (
                grpc.aio.secure_channel(target, credentials, _CHANNEL_OPTIONS)
                if credentials
                else grpc.aio.insecure_channel(target, _CHANNEL_OPTIONS)
            )
            self._stubs = _unary_stubs(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)
        else:
            self._http = httpx.AsyncClient(**self._options.http_kwargs())

    async def classify(
        self, image: bytes, top_k: int = 0, model: str = "", timeout: float | None = None, model_version: str = ""
    ) -> models.ClassifyResponse:
        """The top-K classes of one encoded image (``top_k`` 0: the server's default, 5; ``model_version`` pins one)."""
        request = pb.ClassifyRequest(image=image, top_k=top_k, model=model, model_version=model_version)
        return _to_model(models.ClassifyResponse, await self._call("Classify", request, timeout))

    async def classify_batch(
        self, images: Sequence[bytes], top_k: int = 0, model: str = "", timeout: float | None = None
    ) -> list[models.ClassifyResponse | ClassifyError]:
        """One result or one error per image, in order."""
        response = await self._call("ClassifyBatch", _batch_request(images, top_k, model), timeout)
        return _batch_outcomes(response)  # type: ignore[arg-type]

    async def list_models(self, timeout: float | None = None) -> models.ListModelsResponse:
        """Every served model and the default one."""
        return _to_model(models.ListModelsResponse, await self._call("ListModels", pb.ListModelsRequest(), timeout))

    async def get_model(self, name: str, timeout: float | None = None) -> models.ModelInfo:
        """One served model's metadata."""
        response = await self._call("GetModel", pb.GetModelRequest(name=name), timeout)
        return _to_model(models.ModelInfo, response.model)  # type: ignore[attr-defined]

    async def load_model(self, name: str, version: str = "", timeout: float | None = None) -> models.ModelInfo:
        """Load a model of the server's model repository (every version, or one); returns its versions' states."""
        response = await self._call("LoadModel", pb.LoadModelRequest(name=name, version=version), timeout)
        return _to_model(models.ModelInfo, response.model)  # type: ignore[attr-defined]

    async def unload_model(self, name: str, version: str = "", timeout: float | None = None) -> models.ModelInfo:
        """Unload a model (every version, or one); returns what remains of it."""
        response = await self._call("UnloadModel", pb.UnloadModelRequest(name=name, version=version), timeout)
        return _to_model(models.ModelInfo, response.model)  # type: ignore[attr-defined]

    async def health(self, timeout: float | None = 5.0) -> str:
        """Readiness as grpc.health.v1 names it: ``SERVING`` once the model is warm, else ``NOT_SERVING``."""
        if self._http is not None:
            try:
                response = await self._http.get("/readyz", timeout=_http_timeout(timeout))
            except httpx.HTTPError as error:
                raise _http_error(error, self._options.target) from None
            return _readiness(response)
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(), timeout=timeout, metadata=self._options.metadata
            )
        except grpc.RpcError as error:
            raise _grpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def ready(self, timeout: float | None = 5.0) -> bool:
        """True when the server answers SERVING; False when not ready or unreachable."""
        try:
            return await self.health(timeout) == "SERVING"
        except ClassifyError:
            return False

    async def wait_ready(self, timeout: float = 120.0, interval: float = 0.2) -> None:
        """Wait until the server is ready; DEADLINE_EXCEEDED after ``timeout`` seconds."""
        deadline = _Deadline(timeout)
        while not await self.ready(min(5.0, max(0.1, deadline.remaining() or 0.1))):
            if not deadline.remaining():
                raise ClassifyError("DEADLINE_EXCEEDED", f"{self._options.target} not ready after {timeout} s")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _call(self, method: str, request: PbMessage, timeout: float | None) -> PbMessage:
        deadline = _Deadline(self._options.timeout if timeout is None else timeout)
        attempt = 1
        while True:
            try:
                return await self._attempt(method, request, deadline.remaining())
            except ClassifyError as error:
                delay = _retry_delay(self._options, method, attempt, error, deadline)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, method: str, request: PbMessage, timeout: float | None) -> PbMessage:
        if self._http is None:
            try:
                return await self._stubs[method](request, timeout=timeout, metadata=_grpc_metadata(self._options))
            except grpc.RpcError as error:
                raise _grpc_error(error) from None
        verb, path, body, params = _http_parts(method, request)
        headers = {"content-type": "application/json"} if body is not None else {}
        headers.update(_trace_context())
        try:
            response = await self._http.request(
                verb, path, content=body, params=params, headers=headers, timeout=_http_timeout(timeout)
            )
        except httpx.HTTPError as error:
            raise _http_error(error, self._options.target) from None
        return _http_message(method, response)


def _http_message(method: str, response: httpx.Response) -> PbMessage:
    if response.status_code != 200:
        raise error_from_http(response)
    output = getattr(pb, _SERVICE.methods_by_name[method].output_type.name)()
    try:
        # Unknown fields are skipped: a newer server may add some.
        return json_format.ParseDict(response.json(), output, ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError) as error:
        raise ClassifyError("INTERNAL", f"unparsable {output.DESCRIPTOR.name} JSON: {error}") from None


def _readiness(response: httpx.Response) -> str:
    if response.status_code not in (200, 503):
        raise error_from_http(response)
    try:
        return str(response.json()["status"])
    except (ValueError, KeyError, TypeError):
        raise error_from_http(response) from None
