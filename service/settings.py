"""All configuration in one typed object: defaults < CLASSIFY_* env vars < command-line flags."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

_CPUS = os.cpu_count() or 1
_MIB = 1 << 20
Sampler = Literal[
    "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"
]


def _otel(default: Any, *env: str, description: str, **constraints: Any) -> Any:
    """A tracing setting read from OpenTelemetry's own variable (the first of ``env`` that is set), not CLASSIFY_*."""
    return Field(default, validation_alias=AliasChoices(*env), description=description, **constraints)


class Settings(BaseSettings):
    """Service settings. Each field is also a flag (--grpc-port) and an env var (CLASSIFY_GRPC_PORT)."""

    model_config = SettingsConfigDict(env_prefix="CLASSIFY_", frozen=True, extra="forbid", populate_by_name=True)

    host: str = Field("0.0.0.0", description="address both servers listen on")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one)")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP gateway port (0 picks a free one)")
    model: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        json_schema_extra={"default_text": "resnet18 if its weights are present, else efficientnet_lite0"},
        description="model to serve, repeatable, the first is the default: resnet18, efficientnet_lite0 "
        "or NAME=ARCH:WEIGHTS[:LABELS]; none given: resnet18 if its weights are present, else "
        "efficientnet_lite0 (env: a JSON list)",
    )
    weights: Path = Field(
        Path("weights/resnet18-f37072fd.pth"), description="weights file of the `resnet18` model"
    )
    weights_sha256: str | None = Field(
        None, description="expected SHA-256 of --weights",
        json_schema_extra={"default_text": "pinned, or from the file name"},
    )
    # ONNX Runtime fp32: the fastest exact fp32 path measured end to end, served, over both
    # transports in alternating rounds (bench/results/2cpu-resnet18-onnx-vs-torch/), with its
    # top-1 and probabilities checked against torch fp32 (tests/e2e/models/test_backend_agreement.py).
    backend: Literal["torch", "torch-bf16", "onnxruntime", "onnxruntime-int8", "cuda-fp16"] = Field(
        "onnxruntime",
        description="inference backend of models whose --model option names none (NAME@BACKEND); "
        "onnxruntime exports the graph on first start and caches it with the weights digest in its name",
    )
    cache_dir: Path = Field(
        Path("weights/cache"), description="ONNX graphs of weights in read-only places (the bundled model, a read-only weights directory)"
    )
    labels: Path | None = Field(
        None, description="labels file (one class a line) for NAME=ARCH:WEIGHTS models that name none"
    )
    model_repository: Path | None = Field(
        None, description="model repository: DIR/NAME/VERSION/ folders with model.toml, weights and labels"
    )
    model_control: Literal["none", "explicit", "poll"] = Field(
        "none", description="models change while serving: none, explicit (load/unload calls) or poll (rescan DIR)"
    )
    repository_poll_s: float = Field(
        10.0, gt=0, description="seconds between rescans of the model repository (--model-control poll)"
    )
    max_request_bytes: int = Field(
        32 * _MIB, ge=1024, description="largest gRPC message / HTTP body accepted",
        json_schema_extra={"default_text": "32 MiB"},
    )
    max_image_bytes: int = Field(
        16 * _MIB, ge=1, description="largest encoded image accepted", json_schema_extra={"default_text": "16 MiB"}
    )
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="largest width x height accepted, checked before decoding"
    )
    max_batch_images: int = Field(64, ge=1, description="most images in one batch call")
    batch_max_size: int = Field(8, ge=1, description="most images per inference batch")
    batch_max_delay_ms: float = Field(
        2.0, ge=0, description="longest wait for images still being decoded to join a batch, in milliseconds"
    )
    queue_size: int = Field(
        128, ge=1, description="images admitted (decoding, queued or in inference) before shedding load"
    )
    jpeg_draft: bool = Field(
        True, description="decode large JPEGs at a reduced scale (>= 2x the model's resize size)"
    )
    # Thread defaults measured over alternating rounds: bench/results/thread-layouts.txt.
    decode_workers: int = Field(
        _CPUS, ge=1, description="threads decoding and preprocessing images",
        json_schema_extra={"default_text": "CPU count"},
    )
    torch_threads: int = Field(
        _CPUS, ge=1, description="intra-op threads of inference (PyTorch and ONNX Runtime)",
        json_schema_extra={"default_text": "CPU count"},
    )
    onnx_spin: bool = Field(
        False, description="let idle ONNX Runtime threads spin-wait (off: they yield the cores to decoding)"
    )
    malloc_tuning: bool = Field(
        True, description="keep freed batch memory in glibc's heap (batch 8 measured ~1.7x faster)"
    )
    grace_period_s: float = Field(
        10.0, ge=0, description="seconds in-flight calls get to finish on shutdown"
    )
    # Two of deploy/envoy's 1 s health-check intervals: Envoy has seen NOT_SERVING before the
    # listeners close (deploy/kubernetes sets 5 s, for endpoint propagation; docs/scaling-out.md).
    shutdown_delay_s: float = Field(
        2.0, ge=0,
        description="seconds a replica keeps serving new calls after SIGTERM, health NOT_SERVING, "
        "so that load balancers stop sending before its listeners close",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="HTTP requests' deadline, decoding, queueing and inference included"
    )
    grpc_upstream: str | None = Field(
        None, description="`classify gateway` only: the gRPC server HOST:PORT to forward to"
    )
    auth_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="bearer tokens accepted on both transports (health excepted); env only, a JSON list",
        json_schema_extra={"flag": False},  # never on a command line, where `ps` shows it
    )
    auth_token_file: Path | None = Field(None, description="file of accepted bearer tokens, one a line")
    admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="bearer tokens that may also load and unload models; env only, a JSON list",
        json_schema_extra={"flag": False},
    )
    admin_token_file: Path | None = Field(None, description="file of admin bearer tokens (model control), one a line")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: serve gRPC and HTTP over TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of --tls-cert-file")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle: require client certificates it signed (mTLS)"
    )
    reflection: bool = Field(True, description="serve gRPC server reflection")
    docs: bool = Field(True, description="serve /docs and /openapi.json")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)"
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="log lines as JSON objects or plain text; auto: text when stderr is a terminal, else JSON"
    )
    # OpenTelemetry tracing (docs/tracing.md). Each setting is read from the standard OTEL_* variable, so an
    # environment set up for any OpenTelemetry SDK sets up this one too; tracing is off unless an exporter or
    # an OTLP endpoint is given. Other OTEL_* variables (headers, certificates, compression, the export timeout,
    # resource attributes, propagators) go straight to the SDK.
    otel_sdk_disabled: bool = _otel(False, "OTEL_SDK_DISABLED", description="switch tracing off whatever else is set")
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = _otel(
        None, "OTEL_TRACES_EXPORTER",
        description="where spans go: otlp, console (stdout) or none; unset: otlp when an OTLP endpoint is set, else none",
    )
    otel_exporter_otlp_endpoint: str | None = _otel(
        None, "OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OTLP collector base URL (http/protobuf appends /v1/traces), e.g. http://collector:4318",
    )
    otel_exporter_otlp_traces_endpoint: str | None = _otel(
        None, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", description="OTLP traces URL, used as given (wins over the base URL)"
    )
    otel_exporter_otlp_protocol: Literal["grpc", "http/protobuf"] = _otel(
        "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL",
        description="OTLP transport: grpc or http/protobuf",
    )
    otel_service_name: str | None = _otel(
        None, "OTEL_SERVICE_NAME", description="service.name of the spans (default: classify, or classify-gateway)"
    )
    otel_traces_sampler: Sampler = _otel(
        "parentbased_always_on", "OTEL_TRACES_SAMPLER",
        description="which calls are traced: always_on, always_off, traceidratio or parentbased_* of those",
    )
    otel_traces_sampler_arg: float = _otel(
        1.0, "OTEL_TRACES_SAMPLER_ARG", ge=0, le=1, description="the sampled fraction of the *traceidratio samplers"
    )
    otel_bsp_max_queue_size: int = _otel(
        2048, "OTEL_BSP_MAX_QUEUE_SIZE", ge=1,
        description="finished spans held for export; beyond it spans are dropped (and counted), never waited for",
    )
    otel_bsp_schedule_delay: int = _otel(
        5000, "OTEL_BSP_SCHEDULE_DELAY", gt=0, description="milliseconds between exports"
    )
    otel_bsp_max_export_batch_size: int = _otel(
        512, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", ge=1, description="most spans in one export (at most the queue size)"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: Any) -> Any:
        known = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        return value.upper() if isinstance(value, str) and value.upper() in known else value

    @field_validator("grpc_upstream")
    @classmethod
    def _upstream(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(dns:(//[^/]*)?/)?[^/\s:]+:\d{1,5}|\[[0-9a-fA-F:.]+\]:\d{1,5}|(unix|unix-abstract|ipv4|ipv6):\S+", value):
            raise ValueError("must be the HOST:PORT of a `classify serve` gRPC port, such as 10.0.0.5:50051 (or a gRPC target: dns:///NAME:PORT)")
        return value

    @field_validator("weights_sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("must be 64 hex digits (the file's SHA-256, as sha256sum prints it)")
        return value.lower() if value else value

    @field_validator("model", "auth_tokens", "admin_tokens", mode="before")
    @classmethod
    def _json_list(cls, value: Any, info: Any) -> Any:
        """Flags give lists; the environment gives a string that must hold a JSON list of strings."""
        if not isinstance(value, str):
            return value
        example = '["resnet18", "efficientnet_lite0"]' if info.field_name == "model" else '["TOKEN"]'
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise ValueError(f"must be a JSON list of strings, such as {example}")
        return parsed

    @model_validator(mode="after")
    def _readable_files(self) -> Settings:
        for name in _INPUT_FILES:
            path = getattr(self, name)
            if path is not None:
                _check_readable(path, name)
        if self.model_repository is not None and not self.model_repository.is_dir():
            raise ValueError(
                f"{_flag('model_repository')} {self.model_repository}: not a directory: "
                "give the folder that holds NAME/VERSION/ folders"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Settings that contradict each other, refused with both named."""
        if self.model_control != "none" and self.model_repository is None:
            raise ValueError(
                f"--model-control {self.model_control} needs --model-repository DIR: "
                "give the repository, or leave --model-control at none"
            )
        if "repository_poll_s" in self.model_fields_set and self.model_control != "poll":
            raise ValueError(
                f"--repository-poll-s {self.repository_poll_s:g} is set but --model-control is {self.model_control}: "
                "the interval is only used with --model-control poll; set that, or drop --repository-poll-s"
            )
        if self.queue_size < self.batch_max_size:
            raise ValueError(
                f"--queue-size {self.queue_size} is smaller than --batch-max-size {self.batch_max_size}: "
                "a full batch (the warm-up's first) could never be admitted; "
                f"raise --queue-size to at least {self.batch_max_size} or lower --batch-max-size"
            )
        if self.grpc_port == self.http_port != 0:
            raise ValueError(
                f"--grpc-port and --http-port are both {self.grpc_port}: give each its own port (0 picks a free one)"
            )
        self._check_tls()
        return self

    def _check_tls(self) -> None:
        """The certificate, its key and the client CA: each needs the others it works with, and must load."""
        cert, key, client_ca = self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file
        if cert is None and key is not None:
            raise ValueError(f"--tls-key-file {key} is set without --tls-cert-file: give both, or neither")
        if cert is not None and key is None:
            raise ValueError(f"--tls-cert-file {cert} is set without --tls-key-file: give both, or neither")
        if client_ca is not None and cert is None:
            raise ValueError(
                f"--tls-client-ca-file {client_ca} (mTLS) is set without --tls-cert-file and --tls-key-file: "
                "the server needs its own certificate and key first"
            )
        if cert is None or key is None:
            return
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as error:
            raise ValueError(
                f"--tls-cert-file {cert} and --tls-key-file {key} do not load as a PEM certificate chain and its "
                f"private key ({getattr(error, 'reason', None) or error}): give the matching pair"
            ) from None
        if client_ca is not None:
            try:
                ssl.create_default_context(cafile=str(client_ca))
            except (ssl.SSLError, ValueError) as error:
                raise ValueError(
                    f"--tls-client-ca-file {client_ca}: not a PEM CA bundle ({getattr(error, 'reason', None) or error})"
                ) from None

    @property
    def tracing(self) -> bool:
        """Whether spans are exported: an exporter named, or (none named) an OTLP endpoint given."""
        if self.otel_sdk_disabled:
            return False
        if self.otel_traces_exporter is None:
            return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)
        return self.otel_traces_exporter != "none"

    def summary(self) -> str:
        """One line per setting, for the start-up log."""
        return "\n".join(f"  {name} = {value}" for name, value in self.model_dump().items())


# Files the service reads at start: each must exist and be readable (--weights has its own
# rule in the model catalog: the default may be absent, and then the bundled model serves).
_INPUT_FILES = (
    "labels", "auth_token_file", "admin_token_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file",
)
# Fields whose values never appear in a message.
_SECRETS = frozenset({"auth_tokens", "admin_tokens"})
# CLASSIFY_* variables that are not settings of the server and are expected in its environment:
# the client's token, and the test suite's soak length.
_OTHER_VARIABLES = frozenset({"CLASSIFY_TOKEN", "CLASSIFY_SOAK_SECONDS"})
# Kubernetes sets {SERVICE}_SERVICE_HOST, {SERVICE}_PORT_... for every Service in the namespace, so a
# Service named classify (deploy/kubernetes/service.yaml) puts CLASSIFY_SERVICE_HOST, CLASSIFY_PORT...
# into every pod: never a typo.
_KUBERNETES_LINK = re.compile(r"^CLASSIFY(_[A-Z0-9_]+)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[A-Z0-9_]+)?)$")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return env_name(name)


def env_name(name: str) -> str:
    """The environment variable of a setting: CLASSIFY_NAME, or the OTEL_* variable a tracing setting reads."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return " / ".join(str(choice) for choice in alias.choices)
    return "CLASSIFY_" + name.upper()


def _check_readable(path: Path, name: str) -> None:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        reason = "is a directory" if path.is_dir() else (error.strerror or str(error)).lower()
        raise ValueError(f"{_flag(name)} {path}: cannot be read ({reason}): give a readable file") from None


def is_flag(name: str) -> bool:
    """Whether settings field ``name`` has a command-line flag (tokens are env only: `ps` shows flags)."""
    extra = Settings.model_fields[name].json_schema_extra
    return not (isinstance(extra, dict) and extra.get("flag") is False)


def default_text(name: str) -> str:
    """The default of a setting as the documentation and --help show it."""
    field = Settings.model_fields[name]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "default_text" in extra:
        return str(extra["default_text"])
    default = field.get_default(call_default_factory=True)
    if default is None or default == []:
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    return f"{default:g}" if isinstance(default, float) else str(default)


class SettingsProblem(ValueError):
    """A setting that cannot be used, as one line: the setting, its value, and what to do."""


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per CLASSIFY_* variable that is no setting (a typo is otherwise silently ignored).

    A warning, not a refusal: a Kubernetes Service named ``classify`` puts CLASSIFY_SERVICE_HOST and
    CLASSIFY_PORT_* into every pod of its namespace, and the client's CLASSIFY_TOKEN shares the prefix;
    refusing would stop a server over variables that are not its configuration.
    """
    environ = os.environ if environ is None else environ
    # The tracing settings read OTEL_* variables (env_name): a CLASSIFY_OTEL_* one is a mistake too.
    known = {_env(name) for name in Settings.model_fields if _env(name).startswith("CLASSIFY_")}
    lines = []
    for variable in sorted(environ):
        if not variable.startswith("CLASSIFY_") or variable in known or variable in _OTHER_VARIABLES:
            continue
        if _KUBERNETES_LINK.match(variable):
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else " (see docs/configuration.md for the settings)"
        lines.append(f"environment variable {variable} is not a setting and is ignored{hint}")
    return lines


def describe_error(error: ValidationError | SettingsError, given: set[str]) -> str:
    """One line for the first problem of ``error``; ``given`` are the fields set by a flag (the rest came from env)."""
    if isinstance(error, SettingsError):
        return str(error)
    problem = error.errors()[0]
    message = str(problem["msg"]).removeprefix("Value error, ")
    location = problem["loc"]
    if not location or location[0] not in Settings.model_fields:
        return message  # a contradiction: its message names every setting involved
    name = str(location[0])
    source = _flag(name) if name in given else _env(name)
    value = problem.get("input")
    shown = "(value hidden)" if name in _SECRETS else (str(value) if value not in ("", None) else repr(value))
    field = Settings.model_fields[name]
    choices = getattr(field.annotation, "__args__", None)
    if problem["type"] == "literal_error" and choices:
        message = "must be one of " + ", ".join(str(c) for c in choices)
    return f"{source} {shown}: {message}"


def add_settings_arguments(
    parser: argparse.ArgumentParser, *, only: set[str] | None = None, exclude: frozenset[str] | set[str] = frozenset()
) -> None:
    """Add one flag per settings field; flags left out keep the env/default value."""
    for name, field in Settings.model_fields.items():
        if (only is not None and name not in only) or name in exclude:
            continue
        if not is_flag(name):
            # Accepted only to be refused with the right advice, instead of argparse's "unrecognized arguments".
            parser.add_argument(_flag(name), dest=f"_env_only_{name}", default=None, help=argparse.SUPPRESS)
            continue
        repeated = field.annotation == list[str]
        parser.add_argument(
            _flag(name),
            dest=name,
            default=None,
            action="append" if repeated else "store",
            metavar=name.split("_")[-1].upper(),
            help=f"{field.description} (env {_env(name)}, default {default_text(name)})",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from env vars and defaults, overridden by the flags given; SettingsProblem names what is wrong."""
    values = vars(args)
    for name in Settings.model_fields:
        if values.get(f"_env_only_{name}") is not None:
            raise SettingsProblem(
                f"{_flag(name)} is not a flag: a command line is visible to every user (ps); "
                f"set {_env(name)} (a JSON list) or use {_flag(name.removesuffix('s'))}-file FILE"
            )
    overrides: dict[str, Any] = {
        name: value for name, value in values.items() if name in Settings.model_fields and value is not None
    }
    try:
        return Settings(**overrides)
    except (ValidationError, SettingsError) as error:
        raise SettingsProblem(describe_error(error, set(overrides))) from None
