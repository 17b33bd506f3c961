"""The registry: the current version switches in one step, and a retired version lives until its last lease ends."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import pytest

from service.core.batching import Batcher
from service.core.models import LoadedModel, ModelInfo
from service.core.registry import ModelRegistry, ServedVersion, VersionState
from service.errors import NotFound, Unavailable

INFO = ModelInfo("m", "resnet18", "ab" * 32, 224, 224, ("a", "b"), "torch", "cpu", "fp32")


class ClosingBatcher:
    """Stands in for a batcher: the registry only ever asks the engine to close it."""

    closed = False


def _version(number: str) -> ServedVersion:
    model = LoadedModel(replace(INFO, repository_version=number), preprocessing=None, backend=None)  # type: ignore[arg-type]
    return ServedVersion(model, cast(Batcher, ClosingBatcher()))


@pytest.fixture
def released() -> list[str]:
    return []


@pytest.fixture
def registry(released: list[str]) -> ModelRegistry:
    return ModelRegistry(lambda served: released.append(served.info.version))


def test_highest_ready_version_is_current_and_pins_reach_others(registry: ModelRegistry) -> None:
    registry.publish("m", "1", _version("1"))
    registry.publish("m", "2", _version("2"))
    with registry.lease("m") as current, registry.lease("m", "1") as pinned:
        assert (current.info.version, pinned.info.version) == ("2", "1")
    with pytest.raises(NotFound, match="no ready version '3'; ready versions: 1, 2"):
        registry.acquire("m", "3")


def test_retired_version_is_released_after_its_last_lease(registry: ModelRegistry, released: list[str]) -> None:
    """Unloading a version in use: new requests get the next version at once; the old one goes when its lease ends."""
    registry.publish("m", "1", _version("1"))
    registry.publish("m", "2", _version("2"))
    held = registry.acquire("m")  # admitted on version 2
    registry.retire("m", "2")
    assert [(s.version, s.state) for s in registry.index()] == [("1", VersionState.READY), ("2", VersionState.UNLOADING)]
    with registry.lease("m") as now:
        assert now.info.version == "1"
    assert released == []
    registry.release(held)
    assert released == ["2"] and [s.version for s in registry.index()] == ["1"]


def test_unloaded_model_is_not_found_and_a_loading_one_unavailable(registry: ModelRegistry) -> None:
    registry.publish("m", "1", _version("1"))
    registry.retire("m")
    with pytest.raises(NotFound, match="model 'm' is not served"):
        registry.acquire("m")
    registry.begin_loading("n", "1")
    with pytest.raises(Unavailable, match="loading"):
        registry.acquire("n")
    registry.fail("n", "1", "bad file")
    assert [(s.name, s.state, s.reason) for s in registry.index()] == [("n", VersionState.FAILED, "bad file")]
    with pytest.raises(NotFound, match="no ready version"):
        registry.acquire("n")
