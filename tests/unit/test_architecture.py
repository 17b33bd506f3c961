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

from bench.harness import REPO
from service.settings import Settings, env_name

TRANSPORTS = ("grpc", "grpc_health", "grpc_reflection", "fastapi", "starlette", "uvicorn")
GENERATED = ("classify", "inference", "google")
SERVING_ONLY = ("service.core", "service.api", "service.grpc_server", "service.roots")
TOOLS = ("service.tools", "service.cli")
PLUMBING = ("service.auth", "service.metrics", "service.request_context", "service.logs", "service.settings",
            "service.tracing")
# numpy too: the gateway decodes OIP tensors with struct; numpy and OpenBLAS would add ~30 MiB of RSS.
ML = ("torch", "torchvision", "onnxruntime", "PIL", "numpy")

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


TORCH_FAMILY = ("torch", "torchvision", "timm", "onnx", "onnxscript")
# The modules of the [torch] extra: only they import torch at module level, and
# others import them only where a network is built (lazily, inside a function).
TORCH_MODULES = ("service.core.torch_networks", "service.core.torch_backend", "service.core.onnx_export")


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    """Imports that run when the module is imported (not inside functions, not under TYPE_CHECKING)."""
    names: list[tuple[int, str]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue  # runs when called, not when imported
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                names.extend((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.append((node.lineno, node.module))
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt | ast.ExceptHandler)])  # type: ignore[misc]

    visit(ast.parse(path.read_text(), str(path)).body)
    return names


def test_only_the_torch_extras_modules_import_torch_when_imported() -> None:
    violations = []
    for path in _source_files():
        module = _module_name(path)
        if module in TORCH_MODULES:
            continue
        for line, name in _module_level_imports(path):
            if any(_matches(name, p) for p in (*TORCH_FAMILY, *TORCH_MODULES)):
                violations.append(f"{path.relative_to(REPO)}:{line}: {module} imports {name} when imported")
    assert not violations, "\n".join(violations)


def test_the_serving_path_imports_no_torch() -> None:
    """Everything `classify serve` imports before it loads a model, and the model code of exported graphs."""
    modules = ["service.roots.serve", "service.core.control", "service.core.model_options", "service.core.exported", "service.cli"]
    result = _probe(
        f"import importlib, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TORCH_FAMILY!r}))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


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
    """`classify gateway` holds no model: no torch, torchvision, ONNX Runtime, Pillow or numpy, no core."""
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


def test_the_configuration_page_is_generated_from_the_settings() -> None:
    """docs/configuration.md's table is the settings object's (python -m service.tools.settings_table --write)."""
    from service.tools.settings_table import PAGE, markdown_table, page_table

    assert page_table(PAGE.read_text()) == markdown_table(), "run: python -m service.tools.settings_table --write"
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in markdown_table()


def test_readme_has_a_curl_example_for_every_route() -> None:
    from http_gateway.app import create_app
    from service.api.dispatch import InProcessBackend
    from service.core.engine import EngineRef

    app = create_app(InProcessBackend({}, EngineRef()), max_request_bytes=1 << 20, request_timeout_s=1)
    docs = "".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    for path in app.openapi()["paths"]:
        assert f"http://127.0.0.1:8000{path.replace('{name}', 'resnet18').replace('{version}', '1')}" in docs, path


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
