"""Tensor element encodings of the Open Inference Protocol, shared by its gRPC and REST forms.

A BYTES tensor in raw form (gRPC ``raw_input_contents``, REST's binary data
extension) is its elements one after another, each a 4-byte little-endian
length followed by that many bytes. Numeric tensors in raw form are their
elements in little-endian, row-major order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

from service.errors import InvalidArgument

if TYPE_CHECKING:  # numpy only where tensors are made (the server): the gateway decodes without it
    import numpy as np

_LENGTH = struct.Struct("<I")


def split_bytes_elements(raw: bytes, expected: int) -> list[bytes]:
    """The elements of a raw BYTES tensor; exactly ``expected`` of them, or INVALID_ARGUMENT."""
    elements: list[bytes] = []
    offset, view = 0, memoryview(raw)
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise InvalidArgument("raw BYTES tensor is truncated: an element's 4-byte length prefix is cut off")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise InvalidArgument(
                f"raw BYTES tensor is truncated: element {len(elements)} declares {length} bytes, "
                f"{len(raw) - offset} remain"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if len(elements) != expected:
        raise InvalidArgument(f"raw BYTES tensor holds {len(elements)} elements; its shape says {expected}")
    return elements


def join_bytes_elements(elements: Iterable[bytes]) -> bytes:
    """A raw BYTES tensor: each element behind its 4-byte little-endian length."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def fp32_raw(array: np.ndarray) -> bytes:
    """A float32 tensor's raw form: little-endian, row-major."""
    import numpy as np

    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def fp32_from_raw(raw: bytes) -> tuple[float, ...]:
    """The flat elements of a raw float32 tensor.

    With struct, not numpy: the gateway decodes these, and importing numpy (with OpenBLAS)
    would cost it about 30 MiB of RSS (bench/results/slim-targets/).
    """
    if len(raw) % 4:
        raise ValueError(f"a raw float32 tensor of {len(raw)} bytes is not a whole number of 4-byte elements")
    return struct.unpack(f"<{len(raw) // 4}f", raw)
