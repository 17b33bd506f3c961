"""All configuration in one typed object: defaults < CLASSIFY_* env vars < command-line flags."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    model: list[str] = Field(
        default_factory=list,
        description="model to serve, repeatable, the first is the default: resnet18, efficientnet_lite0 "
        "or NAME=ARCH:WEIGHTS[:LABELS]; none given: resnet18 if its weights are present, else "
        "efficientnet_lite0 (env: a JSON list)",
    )
    weights: Path = Field(
        Path("weights/resnet18-f37072fd.pth"), description="weights file of the `resnet18` model"
    )
    weights_sha256: str | None = Field(
        None, description="expected SHA-256 of --weights (default: pinned or from the file name)"
    )
    # ONNX Runtime fp32: the fastest exact fp32 path measured end to end, served, over both
    # transports in alternating rounds (bench/results/2cpu-resnet18-onnx-vs-torch/), with its
    # top-1 and probabilities checked against torch fp32 (tests/core/test_backend_agreement.py).
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
        32 * _MIB, ge=1024, description="largest gRPC message / HTTP body accepted"
    )
    max_image_bytes: int = Field(16 * _MIB, ge=1, description="largest encoded image accepted")
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
    decode_workers: int = Field(_CPUS, ge=1, description="threads decoding and preprocessing images")
    torch_threads: int = Field(
        _CPUS, ge=1, description="intra-op threads of inference (PyTorch and ONNX Runtime)"
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
    shutdown_delay_s: float = Field(
        1.0, ge=0, description="seconds new calls get UNAVAILABLE / 503 on shutdown before the listeners close"
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="HTTP requests' deadline, decoding, queueing and inference included"
    )
    grpc_upstream: str | None = Field(
        None, description="`classify gateway` only: the gRPC server HOST:PORT to forward to"
    )
    auth_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="bearer tokens accepted on both transports (health excepted); env only, a JSON list",
        json_schema_extra={"flag": False},  # never on a command line, where `ps` shows it
    )
    auth_token_file: Path | None = Field(None, description="file of accepted bearer tokens, one a line")
    admin_tokens: list[SecretStr] = Field(
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
    log_level: str = Field("INFO", description="logging level")
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

    @model_validator(mode="after")
    def _repository(self) -> Settings:
        if self.model_control != "none" and self.model_repository is None:
            raise ValueError(f"--model-control {self.model_control} needs --model-repository DIR")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("--tls-cert-file and --tls-key-file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("--tls-client-ca-file (mTLS) needs --tls-cert-file and --tls-key-file")
        return self

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


def env_name(name: str) -> str:
    """The environment variable of a setting: CLASSIFY_NAME, or the OTEL_* variable a tracing setting reads."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return " / ".join(str(choice) for choice in alias.choices)
    return "CLASSIFY_" + name.upper()


def add_settings_arguments(
    parser: argparse.ArgumentParser, *, only: set[str] | None = None, exclude: frozenset[str] | set[str] = frozenset()
) -> None:
    """Add one flag per settings field; flags left out keep the env/default value."""
    for name, field in Settings.model_fields.items():
        if (only is not None and name not in only) or name in exclude:
            continue
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("flag") is False:
            continue
        flag = "--" + name.replace("_", "-")
        env = env_name(name)
        repeated = field.annotation == list[str]
        default = "none" if repeated else field.default
        parser.add_argument(
            flag,
            dest=name,
            default=None,
            action="append" if repeated else "store",
            metavar=name.split("_")[-1].upper(),
            help=f"{field.description} (env {env}, default {default})",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from env vars and defaults, overridden by the flags given."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in vars(args).items()
        if name in Settings.model_fields and value is not None
    }
    return Settings(**overrides)
