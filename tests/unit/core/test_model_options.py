"""Model options: built-in names, custom NAME=ARCH:WEIGHTS[:LABELS], and the default."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from service.core.model_options import BUNDLED_MODEL, model_specs
from service.errors import StartupError


def test_default_is_resnet18_when_its_weights_are_present(weights: Path) -> None:
    (spec,) = model_specs([], resnet18_weights=weights)
    assert (spec.name, spec.weights) == ("resnet18", weights)


def test_default_falls_back_to_the_bundled_model_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        (spec,) = model_specs([], resnet18_weights=tmp_path / "resnet18-f37072fd.pth")
    assert spec.name == BUNDLED_MODEL and spec.weights.is_file()
    assert "classify weights fetch resnet18" in caplog.text


def test_options_in_order_with_labels(tmp_path: Path, weights: Path) -> None:
    labels = tmp_path / "l.txt"
    specs = model_specs(
        ["efficientnet_lite0", "resnet18", f"mine=resnet18:{weights}", f"yours=resnet18:{weights}:{labels}"],
        resnet18_weights=weights,
        default_labels=tmp_path / "default.txt",
    )
    assert [s.name for s in specs] == ["efficientnet_lite0", "resnet18", "mine", "yours"]
    assert specs[2].labels_file == tmp_path / "default.txt" and specs[3].labels_file == labels


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["vgg16"], "expected resnet18 or efficientnet_lite0"),
        (["x=alexnet:/w.pth"], "unknown architecture 'alexnet'"),
        (["x=resnet18"], "NAME=ARCH:WEIGHTS"),
        (["resnet18", "resnet18"], "repeated: resnet18"),
    ],
)
def test_bad_options_are_start_up_errors(options: list[str], message: str, weights: Path) -> None:
    with pytest.raises(StartupError, match=message):
        model_specs(options, resnet18_weights=weights)
