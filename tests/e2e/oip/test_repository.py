"""tritonclient's repository calls drive the model repository: index, load a new version, pin, unload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import ServerProcess, random_resnet18_weights, start_server
from service.tools.weights_store import place_in_repository
from tests.e2e.oip.conftest import run_driver

TOKEN, ADMIN = "oip-user-token", "oip-admin-token"
MODEL = "repo-model"


@pytest.fixture(params=["grpc", "http"])
def repository_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, ServerProcess]]:
    """An explicit-control server whose repository holds version 1 of MODEL."""
    root, weights = tmp_path / "repository", tmp_path / "weights"
    weights.mkdir()
    place_in_repository(random_resnet18_weights(weights, seed=21), root, MODEL, architecture="resnet18", version=1)
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    (tmp_path / "admin").write_text(ADMIN + "\n")
    server = start_server(
        random_resnet18_weights(weights, seed=0), tmp_path / "server", "--model-repository", str(root),
        "--model-control", "explicit", "--auth-token-file", str(tmp_path / "tokens"),
        "--admin-token-file", str(tmp_path / "admin"), "--batch-max-size", "4",
    )
    yield request.param, weights, server
    assert server.stop() == 0, server.log()


def test_load_pin_and_unload_with_tritonclient(
    repository_server: tuple[str, Path, ServerProcess], triton_python: Path, photo_files: list[Path], tmp_path: Path
) -> None:
    protocol, weights, server = repository_server
    root = tmp_path / "repository"
    place_in_repository(random_resnet18_weights(weights, seed=22), root, MODEL, architecture="resnet18", version=2)
    url = server.grpc_address if protocol == "grpc" else f"127.0.0.1:{server.http_port}"
    seen = run_driver(
        triton_python, protocol, url, photo_files[:1], "--scenario", "repository", "--token", TOKEN,
        "--admin-token", ADMIN, model=MODEL,
    )

    def states(rows: list[dict[str, str]]) -> dict[str, str]:
        return {row["version"]: row.get("state", "") for row in rows if row["name"] == MODEL}

    # Version 2 is in the repository before it is loaded: listed, as Triton lists it, UNAVAILABLE.
    assert states(seen["index_before"]) == {"1": "READY", "2": "UNAVAILABLE"}
    denied = "StatusCode.PERMISSION_DENIED" if protocol == "grpc" else "403"
    assert seen["load_without_admin"]["status"] == denied, seen["load_without_admin"]
    assert states(seen["index_loaded"]) == {"1": "READY", "2": "READY"}
    assert sorted(seen["metadata_versions"]) == ["1", "2"]
    assert (seen["answered_unpinned"], seen["answered_pinned_1"]) == ("2", "1")  # highest is current; a pin holds
    missing = "StatusCode.NOT_FOUND" if protocol == "grpc" else "404"
    assert seen["pinned_unknown"]["status"] == missing
    # Unloaded versions stay listed (there is something to load again), none of them READY.
    assert set(states(seen["index_unloaded"])) == {"1", "2"}
    assert all(state in ("UNLOADING", "UNAVAILABLE") for state in states(seen["index_unloaded"]).values())
    assert seen["after_unload"]["status"] in {missing, "StatusCode.UNAVAILABLE", "503"}, seen["after_unload"]
    assert seen["ready_after_unload"] is False
