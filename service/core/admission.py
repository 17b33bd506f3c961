"""Admission control: the one limit on images held at once (decoding, queued or in inference), and draining.

Everything past admission is bounded by it: the decode pool's queue, each
batcher's queue, the inference thread. A request over the limit is refused at
once with retry advice instead of waiting behind the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import Overloaded
from service.metrics import IN_FLIGHT, SHED

RETRY_AFTER_S = 1.0


class Admission:
    """Counts admitted images on the event loop (no lock needed) and refuses those over ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight = 0
        self._admitted = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def admitted(self) -> int:
        """Images admitted since start (a drain reports those it took while leaving rotation)."""
        return self._admitted

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the ``limit`` places for the block; Overloaded (retry advice: 1 s) when none is free."""
        if self._in_flight >= self._limit:
            SHED.inc()
            raise Overloaded(
                f"server at capacity ({self._limit} images in flight); retry later", retry_after=RETRY_AFTER_S
            )
        self._count(+1)
        self._admitted += 1
        try:
            yield
        finally:
            self._count(-1)

    async def drained(self, timeout: float) -> bool:
        """Wait until no image is in flight; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _count(self, delta: int) -> None:
        self._in_flight += delta
        IN_FLIGHT.set(self._in_flight)
        if self._in_flight == 0:
            self._idle.set()
        else:
            self._idle.clear()
