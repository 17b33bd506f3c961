"""House rules that keep the design honest: a transport-free core, a truthful README."""

from __future__ import annotations

import subprocess
import sys

from service.settings import Settings
from tests.support import REPO

CORE_MODULES = ["service.core." + p.stem for p in (REPO / "service" / "core").glob("*.py") if p.stem != "__init__"]


def test_core_imports_no_transport_and_no_generated_code() -> None:
    probe = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}: importlib.import_module(name)\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'grpc', 'fastapi', 'starlette', 'uvicorn', 'classify', 'pydantic_models', 'google'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    for name in Settings.model_fields:
        flag, env = "--" + name.replace("_", "-"), "CLASSIFY_" + name.upper()
        assert f"| `{flag}` | `{env}` |" in readme, f"README's configuration table lacks {flag}"


def test_readme_has_a_curl_example_for_every_route() -> None:
    from http_gateway.app import create_app
    from http_gateway.backends import InProcessBackend
    from service.core.engine import EngineRef

    app = create_app(InProcessBackend({}, EngineRef()), max_request_bytes=1 << 20, request_timeout_s=1)
    readme = (REPO / "README.md").read_text()
    for path in app.openapi()["paths"]:
        assert f"http://127.0.0.1:8000{path.replace('{name}', 'resnet18').replace('{version}', '1')}" in readme, path
