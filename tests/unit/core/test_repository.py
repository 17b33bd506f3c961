"""The model repository on disk: model.toml is validated key by key, versions are placed atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness import random_resnet18_weights
from service.core.repository import ModelFileError, read_spec, version_folders
from service.tools.weights_store import FetchError, place_in_repository


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_resnet18_weights(tmp_path_factory.mktemp("repo-weights"), seed=3, num_classes=2)


@pytest.fixture(scope="module")
def pet_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    labels = tmp_path_factory.mktemp("repo-labels") / "pets.txt"
    labels.write_text("cat\ndog\n")
    return labels


def test_placed_versions_number_up_and_read_back(tmp_path: Path, small_weights: Path, pet_labels: Path) -> None:
    """place_in_repository writes model.toml with the digest; versions count up; the spec names the version."""
    first = place_in_repository(small_weights, tmp_path / "repo", "pets", architecture="resnet18", labels=pet_labels)
    second = place_in_repository(small_weights, tmp_path / "repo", "pets", architecture="resnet18", labels=pet_labels)
    assert (first.name, second.name) == ("1", "2")
    (tmp_path / "repo" / "pets" / ".tmp-9-1").mkdir()  # a version being written: ignored
    assert [v.version for v in version_folders(tmp_path / "repo", "pets")] == [1, 2]
    spec = read_spec(version_folders(tmp_path / "repo", "pets")[0])
    assert (spec.name, spec.version, spec.architecture, spec.labels_file) == ("pets", "1", "resnet18", first / "pets.txt")
    with pytest.raises(FetchError, match="already exists"):
        place_in_repository(small_weights, tmp_path / "repo", "pets", architecture="resnet18", labels=pet_labels, version=2)


def test_weights_whose_classes_do_not_match_the_labels_are_refused(tmp_path: Path, small_weights: Path) -> None:
    """A version the server would refuse to load (2 classes, ImageNet's 1000 labels) is refused when placed."""
    with pytest.raises(FetchError, match=r"has 2 classes but the ImageNet labels has 1000 labels: pass --labels"):
        place_in_repository(small_weights, tmp_path, "pets", architecture="resnet18")
    assert not (tmp_path / "pets").exists() or not any((tmp_path / "pets").iterdir())


BAD_FILES = {
    "not toml": ("architecture = resnet18", "is not valid TOML"),
    "unknown key": ('architecture = "resnet18"\nweights = "w.pth"\nsha256 = "00"\nlayers = "18"', "unknown key 'layers'"),
    "missing key": ('architecture = "resnet18"\nweights = "w.pth"', "key 'sha256' is required"),
    "wrong type": ('architecture = "resnet18"\nweights = "w.pth"\nsha256 = 5', "key 'sha256' must be a string"),
    "bad digest": ('architecture = "resnet18"\nweights = "w.pth"\nsha256 = "xyz"', "key 'sha256' must be 64 hex digits"),
    "architecture": ('architecture = "vgg"\nweights = "w.pth"\nsha256 = "' + "0" * 64 + '"', "key 'architecture' is 'vgg'"),
    "path escape": ('architecture = "resnet18"\nweights = "../w.pth"\nsha256 = "' + "0" * 64 + '"', "key 'weights' must be a file name"),
    "absent weights": ('architecture = "resnet18"\nweights = "w.pth"\nsha256 = "' + "0" * 64 + '"', "key 'weights' names 'w.pth', which is not a file"),
    "backend": ('architecture = "resnet18"\nweights = "w.pth"\nsha256 = "' + "0" * 64 + '"\nbackend = "tpu"', "key 'backend' is 'tpu'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_model_file_names_the_file_and_the_key(case: str, tmp_path: Path, small_weights: Path, pet_labels: Path) -> None:
    text, message = BAD_FILES[case]
    folder = place_in_repository(small_weights, tmp_path, "pets", architecture="resnet18", labels=pet_labels)
    (folder / "model.toml").write_text(text + "\n")
    with pytest.raises(ModelFileError) as error:
        read_spec(version_folders(tmp_path, "pets")[0])
    assert str(folder / "model.toml") in str(error.value) and message in str(error.value)


def test_hash_mismatch_names_the_key_and_the_weights(tmp_path: Path, small_weights: Path, pet_labels: Path) -> None:
    folder = place_in_repository(small_weights, tmp_path, "pets", architecture="resnet18", labels=pet_labels)
    with (folder / small_weights.name).open("ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(ModelFileError, match=r"model\.toml: key 'sha256' is [0-9a-f]{64} but .* has SHA-256"):
        read_spec(version_folders(tmp_path, "pets")[0])


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pets" / "1").mkdir(parents=True)
    with pytest.raises(ModelFileError, match=r"pets/1/model\.toml is missing"):
        read_spec(version_folders(tmp_path, "pets")[0])
