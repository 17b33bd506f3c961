"""All configuration in one typed object: defaults < CLASSIFY_* env vars < command-line flags."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_CPUS = os.cpu_count() or 1
_MIB = 1 << 20


class Settings(BaseSettings):
    """Service settings. Each field is also a flag (--grpc-port) and an env var (CLASSIFY_GRPC_PORT)."""

    model_config = SettingsConfigDict(env_prefix="CLASSIFY_", frozen=True, extra="forbid")

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
    labels: Path | None = Field(
        None, description="labels file (one class a line) for NAME=ARCH:WEIGHTS models that name none"
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
        2.0, ge=0, description="longest wait for a batch to fill, in milliseconds"
    )
    queue_size: int = Field(64, ge=1, description="images waiting for inference before shedding load")
    decode_workers: int = Field(_CPUS, ge=1, description="threads decoding and preprocessing images")
    torch_threads: int = Field(_CPUS, ge=1, description="intra-op threads of PyTorch inference")
    grace_period_s: float = Field(
        10.0, ge=0, description="seconds in-flight calls get to finish on shutdown"
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="HTTP requests' deadline, decoding, queueing and inference included"
    )
    grpc_upstream: str | None = Field(
        None, description="`classify gateway` only: the gRPC server HOST:PORT to forward to"
    )
    log_level: str = Field("INFO", description="logging level")

    def summary(self) -> str:
        """One line per setting, for the start-up log."""
        return "\n".join(f"  {name} = {value}" for name, value in self.model_dump().items())


def add_settings_arguments(
    parser: argparse.ArgumentParser, *, only: set[str] | None = None, exclude: set[str] = frozenset()
) -> None:
    """Add one flag per settings field; flags left out keep the env/default value."""
    for name, field in Settings.model_fields.items():
        if (only is not None and name not in only) or name in exclude:
            continue
        flag = "--" + name.replace("_", "-")
        env = "CLASSIFY_" + name.upper()
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
