"""Weights are verified by digest and loaded safely and strictly."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from bench.harness import random_resnet18_weights
from service.core.models import ModelSpec, load_model
from service.core.torch_networks import load_state_dict
from service.core.weights import verify_weights
from service.errors import StartupError


def test_hash_suffix_must_match(weights: Path, tmp_path: Path) -> None:
    assert verify_weights(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()
    renamed = tmp_path / "resnet18-deadbeef.pth"
    renamed.write_bytes(weights.read_bytes())
    with pytest.raises(StartupError, match="does not start with the deadbeef"):
        verify_weights(renamed)


def test_unverifiable_name_is_refused(weights: Path, tmp_path: Path) -> None:
    plain = tmp_path / "model.pth"
    plain.write_bytes(weights.read_bytes())
    with pytest.raises(StartupError, match="cannot be verified"):
        verify_weights(plain)


def test_official_name_needs_the_pinned_digest(weights: Path, tmp_path: Path) -> None:
    """A file named like the official one but with other bytes is refused."""
    fake = tmp_path / "resnet18-f37072fd.pth"
    fake.write_bytes(weights.read_bytes())
    with pytest.raises(StartupError, match="expected f37072fd47e89c5e"):
        verify_weights(fake)


def test_missing_file_names_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="does not exist.*--weights"):
        verify_weights(tmp_path / "resnet18-f37072fd.pth")


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def test_pickled_code_is_not_executed(tmp_path: Path) -> None:
    """weights_only=True refuses arbitrary pickled objects."""
    path = tmp_path / "evil.pth"
    torch.save({"x": _Exploit()}, path, pickle_module=pickle)
    with pytest.raises(StartupError, match="not a loadable PyTorch state dict"):
        load_state_dict(path)


def test_strict_loading_rejects_foreign_keys(tmp_path: Path) -> None:
    state = {"fc.weight": torch.zeros(1000, 512), "unexpected.weight": torch.zeros(1)}
    data_path = tmp_path / "x.pth"
    torch.save(state, data_path)
    named = tmp_path / f"resnet18-{hashlib.sha256(data_path.read_bytes()).hexdigest()[:8]}.pth"
    data_path.rename(named)
    with pytest.raises(StartupError, match="do not fit the resnet18 architecture"):
        load_model(ModelSpec("resnet18", "resnet18", named))


def test_class_count_comes_from_the_weights_and_must_match_labels(tmp_path: Path) -> None:
    path = random_resnet18_weights(tmp_path, seed=1, num_classes=3)
    labels = tmp_path / "labels.txt"
    labels.write_text("ant\nbee\nwasp\n")
    model = load_model(ModelSpec("insects", "resnet18", path, labels_file=labels))
    assert model.info.labels == ("ant", "bee", "wasp")
    labels.write_text("ant\nbee\n")
    with pytest.raises(StartupError, match="3 classes but .* has 2 labels"):
        load_model(ModelSpec("insects", "resnet18", path, labels_file=labels))
