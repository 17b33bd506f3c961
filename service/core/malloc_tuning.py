"""glibc malloc settings for batched inference.

By default glibc serves every allocation above 128 KiB-32 MiB (adaptive) with a
fresh mmap and returns it on free, so each batch's activations (tens of MiB)
are page-faulted in again: measured on this 2-core machine, EfficientNet-Lite0
at batch 8 ran 45-49 img/s by default and 78-91 img/s with both thresholds at
1 GB (docs/efficientnet_lite0.md). Raising them keeps that memory in the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30


def keep_freed_memory_in_the_heap() -> bool:
    """Apply the thresholds (glibc only); False where malloc is not glibc's."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    logger.info("glibc malloc thresholds raised to %d bytes: %s", _THRESHOLD, "ok" if ok else "refused")
    return ok


def return_freed_memory() -> bool:
    """Hand the heap's free pages back to the kernel (glibc's malloc_trim), e.g. after a model is released."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):
        return False
