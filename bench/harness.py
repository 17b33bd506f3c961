"""What tests and benchmarks share: real photos, deterministic random-init weights, real server processes on free ports."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent


def skimage_photo(name: str) -> bytes:
    """The encoded file of a photo shipped inside scikit-image (chelsea.png, rocket.jpg...)."""
    import skimage

    return (Path(skimage.__file__).parent / "data" / name).read_bytes()


def sklearn_photo(name: str) -> bytes:
    """The encoded file of a photo shipped inside scikit-learn (china.jpg, flower.jpg)."""
    import sklearn.datasets

    return (Path(sklearn.datasets.__file__).parent / "images" / name).read_bytes()


def matplotlib_photo(name: str) -> bytes:
    """The encoded file of a photo shipped inside matplotlib's sample data (grace_hopper.jpg)."""
    import matplotlib

    return (Path(matplotlib.get_data_path()) / "sample_data" / name).read_bytes()


def real_photos() -> dict[str, bytes]:
    """Real photos, as files: PNG and JPEG, several sizes and aspect ratios."""
    photos = {n: skimage_photo(n) for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")}
    photos.update({n: sklearn_photo(n) for n in ("china.jpg", "flower.jpg")})
    return photos


def random_resnet18_weights(directory: Path, seed: int = 0, num_classes: int = 1000) -> Path:
    """A deterministic random-init ResNet18 state dict, named with its hash prefix."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    module = torchvision.models.resnet18(num_classes=num_classes)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    data = buffer.getvalue()
    path = directory / f"resnet18-seed{seed}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    path.write_bytes(data)
    return path


def torch_is_loaded(pid: int) -> bool:
    """Whether process ``pid`` has torch's shared library mapped (importing torch maps it)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


# A fresh venv's own interpreter, away from the repository and its .venv.
ISOLATED_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def run_command(args: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command (by default in ISOLATED_ENV), fail the test with its output unless it exits 0; its stdout."""
    import pytest

    try:
        result = subprocess.run(args, cwd=cwd, env=env or ISOLATED_ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(args)}` did not finish within {timeout:.0f} s")
    assert result.returncode == 0, f"`{' '.join(args)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (links not followed)."""
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def grpc_health(address: str, service: str = "") -> int:
    """grpc.health.v1's status of ``service`` ("" is the server) at ``address``."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Endpoints:
    """A server's two ports on loopback, as addresses, and its gRPC health (for any ``grpc_port``/``http_port``)."""

    grpc_port: int
    http_port: int

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def health(self, service: str = "") -> int:
        return grpc_health(self.grpc_address, service)


@dataclass
class ServerProcess(Endpoints):
    """A `classify serve` subprocess on free loopback ports."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not SERVING after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_server(
    weights: Path, log_dir: Path, *extra: str, wait: bool = True, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start `classify serve` with ``weights`` on free ports (``env`` added to its environment); wait until SERVING."""
    grpc_port, http_port = free_port(), free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{grpc_port}.log"
    args = [
        sys.executable, "-m", "service.cli", "serve",
        "--host", "127.0.0.1",
        "--grpc-port", str(grpc_port),
        "--http-port", str(http_port),
        "--weights", str(weights),
        *extra,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        )
    server = ServerProcess(process, grpc_port, http_port, log_path, args)
    if wait:
        try:
            server.wait_serving()
        except BaseException:
            server.process.kill()
            raise
    return server


@dataclass
class GatewayProcess:
    """A standalone `classify gateway --grpc-upstream` subprocess."""

    process: subprocess.Popen[bytes]
    http_port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_gateway(
    upstream: str, log_dir: Path, timeout: float = 60.0, env: dict[str, str] | None = None, *extra: str
) -> GatewayProcess:
    """Start a standalone gateway in front of ``upstream`` (``env`` added to its environment); wait until /readyz is 200."""
    import httpx

    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"gateway-{port}.log"
    args = [sys.executable, "-m", "service.cli", "gateway", "--host", "127.0.0.1",
            "--http-port", str(port), "--grpc-upstream", upstream, *extra]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        )
    gateway = GatewayProcess(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{gateway.http_url}/readyz", timeout=2).status_code == 200:
                return gateway
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"gateway not ready after {timeout} s:\n{log_path.read_text()}")
