"""House rules that keep the design honest: the import layers, a gateway without ML, a truthful README.

The layers, each importing only those below it:

    gen (generated)  <-  service.contract  <-  service.api  <-  service.grpc_server, http_gateway  <-  service.roots  <-  service.cli
    service.errors   <-  service.core      <-  service.api

``service.errors`` and the shared plumbing (auth, metrics, request ids, logs,
settings, tracing) sit below every layer; ``service.tools`` (bench, quantize, export,
codegen, weights files) sits beside serving and nothing that serves imports it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings, env_name
from tests.support import REPO

TRANSPORTS = ("grpc", "grpc_health", "grpc_reflection", "fastapi", "starlette", "uvicorn")
GENERATED = ("classify", "inference", "google")
SERVING_ONLY = ("service.core", "service.api", "service.grpc_server", "service.roots")
TOOLS = ("service.tools", "service.cli")
PLUMBING = ("service.auth", "service.metrics", "service.request_context", "service.logs", "service.settings",
            "service.tracing")
ML = ("torch", "torchvision", "onnxruntime", "PIL")

# Module prefix -> import prefixes its modules must never import (module level or lazily).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "service.errors": ("service", "http_gateway"),
    "service.core": (*TRANSPORTS, *GENERATED, "http_gateway", "service.contract", "service.api", "service.grpc_server",
                     "service.roots", *TOOLS, "service.auth", "service.settings", "service.logs", "service.tracing",
                     # The core may use OpenTelemetry's API (service/core/tracing.py), never the SDK or an exporter.
                     "opentelemetry.sdk", "opentelemetry.exporter"),
    "service.contract": ("grpc.", "fastapi", "starlette", "uvicorn", "http_gateway", *SERVING_ONLY, *TOOLS, *PLUMBING),
    "service.api": ("grpc.", "fastapi", "starlette", "uvicorn", "http_gateway", "service.grpc_server", "service.roots", *TOOLS),
    "service.grpc_server": ("fastapi", "starlette", "uvicorn", "http_gateway", "service.core", "service.roots", *TOOLS),
    "http_gateway": (*SERVING_ONLY, *TOOLS),
    "service.auth": ("http_gateway", *SERVING_ONLY, *TOOLS),
    "service.metrics": ("http_gateway", *SERVING_ONLY, *TOOLS),
    "service.request_context": ("http_gateway", *SERVING_ONLY, *TOOLS),
    "service.logs": ("http_gateway", *SERVING_ONLY, *TOOLS),
    "service.settings": ("http_gateway", *SERVING_ONLY, *TOOLS),
    "service.tracing": ("http_gateway", *SERVING_ONLY, *TOOLS),
    "service.roots": TOOLS,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (lazy imports count too), with its line."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
            names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return names


def _matches(name: str, prefix: str) -> bool:
    if prefix.endswith("."):  # "grpc." : the grpc runtime, not grpc_health
        return name == prefix[:-1] or name.startswith(prefix)
    return name == prefix or name.startswith(prefix + ".")


def _source_files() -> list[Path]:
    return sorted([*(REPO / "service").rglob("*.py"), *(REPO / "http_gateway").rglob("*.py")])


def test_every_module_imports_only_the_layers_below_it() -> None:
    violations = []
    for path in _source_files():
        module = _module_name(path)
        rules = [forbidden for prefix, forbidden in FORBIDDEN.items() if _matches(module, prefix)]
        for line, name in _imports(path):
            if any(_matches(name, prefix) for forbidden in rules for prefix in forbidden):
                violations.append(f"{path.relative_to(REPO)}:{line}: {module} imports {name}")
    assert not violations, "\n".join(violations)


def test_only_the_composition_roots_import_the_gateway() -> None:
    importers = {
        _module_name(path)
        for path in _source_files()
        if not _module_name(path).startswith("http_gateway")
        and any(_matches(name, "http_gateway") for _, name in _imports(path))
    }
    assert {m for m in importers if not m.startswith("service.roots")} == set()


def _probe(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("root", ["service.roots.gateway", "http_gateway.app"])
def test_the_gateway_loads_no_model_library(root: str) -> None:
    """`classify gateway` holds no model: no torch, torchvision, ONNX Runtime or Pillow, no core."""
    result = _probe(
        f"import sys, {root}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {ML!r} or m.startswith(('service.core', 'service.api')))\n"
        "print(bad)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_core_imports_no_transport_and_no_generated_code() -> None:
    core = ["service.core." + p.stem for p in (REPO / "service" / "core").glob("*.py") if p.stem != "__init__"]
    result = _probe(
        "import importlib, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & {set(TRANSPORTS + GENERATED) | {'http_gateway'}!r})\n"
        "assert not bad, bad\n"
    )
    assert result.returncode == 0, result.stderr


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    for name in Settings.model_fields:
        flag, env = "--" + name.replace("_", "-"), env_name(name)
        assert f"| `{flag}` | `{env}` |" in readme, f"README's configuration table lacks {flag}"


def test_readme_has_a_curl_example_for_every_route() -> None:
    from http_gateway.app import create_app
    from service.api.dispatch import InProcessBackend
    from service.core.engine import EngineRef

    app = create_app(InProcessBackend({}, EngineRef()), max_request_bytes=1 << 20, request_timeout_s=1)
    readme = (REPO / "README.md").read_text()
    for path in app.openapi()["paths"]:
        assert f"http://127.0.0.1:8000{path.replace('{name}', 'resnet18').replace('{version}', '1')}" in readme, path


def test_tracing_off_imports_no_opentelemetry_sdk() -> None:
    """With no OTEL_* variable, building both roots' tracing imports neither the SDK nor an exporter."""
    result = _probe(
        "import os, sys\n"
        "for name in [n for n in os.environ if n.startswith('OTEL_')]: del os.environ[name]\n"
        "import service.roots.serve, service.roots.gateway\n"
        "from service.settings import Settings\n"
        "from service.tracing import configure\n"
        "assert configure(Settings(), 'classify') is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
