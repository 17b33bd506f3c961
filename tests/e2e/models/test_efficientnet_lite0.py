"""The bundled EfficientNet-Lite0 weights map onto timm's network by name, strictly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import timm
import torch

from service.core import efficientnet_lite0 as lite0
from service.errors import StartupError


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    return torch.load(lite0.bundled_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def target() -> dict[str, torch.Tensor]:
    return timm.create_model(lite0.TIMM_ARCHITECTURE, pretrained=False).state_dict()


def test_bundled_file_has_the_pinned_digest() -> None:
    path = lite0.bundled_weights_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == lite0.WEIGHTS_SHA256


def test_block_layout_is_read_from_timms_blocks(target: dict[str, torch.Tensor]) -> None:
    model = timm.create_model(lite0.TIMM_ARCHITECTURE, pretrained=False)
    layout = lite0.block_layout(target)
    assert [(s, b) for s, b, _ in layout] == [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]
    flat = [block for stage in model.blocks for block in stage]
    assert [ir for *_, ir in layout] == [type(b).__name__ == "InvertedResidual" for b in flat]


def test_every_source_key_maps_to_one_target_key_of_equal_shape(source: dict, target: dict) -> None:
    layout = lite0.block_layout(target)
    names = [lite0.map_key(key, layout) for key in source]
    assert len(set(names)) == len(names) == len(source) == len(target)
    assert set(names) == set(target)
    for key, name in zip(source, names, strict=True):
        assert source[key].shape == target[name].shape, (key, name)


def test_mapping_is_by_name_not_position(source: dict, target: dict) -> None:
    reversed_source = {key: source[key] for key in reversed(list(source))}
    forward, backward = lite0.map_state_dict(source, target), lite0.map_state_dict(reversed_source, target)
    assert all(forward[k] is backward[k] for k in forward)
    layout = lite0.block_layout(target)
    assert lite0.map_key("_conv_stem.weight", layout) == "conv_stem.weight"
    assert lite0.map_key("_bn1.weight", layout) == "bn2.weight"
    assert lite0.map_key("_fc.bias", layout) == "classifier.bias"
    assert lite0.map_key("_blocks.0._project_conv.weight", layout) == "blocks.0.0.conv_pw.weight"
    assert lite0.map_key("_blocks.1._expand_conv.weight", layout) == "blocks.1.0.conv_pw.weight"
    assert lite0.map_key("_blocks.15._project_conv.weight", layout) == "blocks.6.0.conv_pwl.weight"


def test_unmapped_missing_and_misshaped_keys_all_fail_loudly(source: dict, target: dict) -> None:
    broken = dict(source)
    broken["_mystery.weight"] = torch.zeros(1)
    del broken["_fc.bias"]
    broken["_conv_head.weight"] = torch.zeros(3, 3)
    with pytest.raises(StartupError) as error:
        lite0.map_state_dict(broken, target)
    message = str(error.value)
    assert "_mystery.weight" in message and "classifier.bias" in message and "shape" in message


def test_strict_load_builds_the_network(source: dict) -> None:
    model = lite0.build(source)
    assert model.num_classes == 1000


def test_static_padding_gives_timms_outputs_and_a_graph_without_shape_arithmetic(
    source: dict, tmp_path: Path
) -> None:
    """Fixed pads for the 224 crop: same logits as timm's dynamic "SAME" padding, constant Pads in ONNX."""
    import onnx

    from service.core.onnx_export import export_graph

    dynamic = timm.create_model(lite0.TIMM_ARCHITECTURE, pretrained=False).eval()
    dynamic.load_state_dict(lite0.map_state_dict(source, dynamic.state_dict()), strict=True)
    static = lite0.build(source).eval()
    inputs = torch.randn(2, 3, lite0.INPUT_SIZE, lite0.INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(static(inputs), dynamic(inputs), rtol=0, atol=1e-5)
    export_graph(static, tmp_path / "lite0.onnx", lite0.INPUT_SIZE)
    graph = onnx.load(str(tmp_path / "lite0.onnx"))
    ops = {node.op_type for node in graph.graph.node}
    assert "Pad" in ops and "Shape" not in ops, sorted(ops)
