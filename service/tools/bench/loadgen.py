"""A closed-loop load generator: N workers, each sends its next request when the last one is answered."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.tools.bench.stats import RunResult, summarize


@dataclass(frozen=True)
class Sent:
    """What one request achieved: images classified, and per-image error codes (batch modes)."""

    images: int
    errors: tuple[str, ...] = ()


# send(n) sends request number n (images are picked round-robin from it) and
# raises on failure; the exception's code names the error (see error_code).
Send = Callable[[int], Awaitable[Sent]]


@dataclass(frozen=True)
class Limits:
    """A run ends at ``duration_s`` or after ``max_requests`` requests, whichever comes first."""

    concurrency: int
    duration_s: float
    max_requests: int
    warmup_s: float = 0.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.duration_s <= 0 or self.max_requests < 1 or self.warmup_s < 0:
            raise ValueError(f"invalid run limits: {self}")


def error_code(error: BaseException) -> str:
    """ClassifyError.code, a core ServiceError's code name, else the exception's type."""
    code = getattr(error, "code", None)
    if isinstance(code, str):
        return code
    name = getattr(code, "name", None)
    return name if isinstance(name, str) else type(error).__name__


async def closed_loop(
    send: Send,
    limits: Limits,
    *,
    target: str,
    mode: str,
    bytes_per_image: float | None,
    notes: dict[str, object] | None = None,
) -> RunResult:
    """Warm up untimed for ``limits.warmup_s``, then measure one closed-loop run."""
    if limits.warmup_s > 0:
        await _drive(send, limits.concurrency, time.perf_counter() + limits.warmup_s, 1 << 62, itertools.count(1 << 40))
    cpu_before = time.process_time()
    started = time.perf_counter()
    latencies, images, errors = await _drive(
        send, limits.concurrency, started + limits.duration_s, limits.max_requests, itertools.count()
    )
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    return summarize(
        target=target, mode=mode, concurrency=limits.concurrency, latencies_s=latencies, images=images,
        errors=errors, elapsed_s=elapsed, cpu_s=cpu, bytes_per_image=bytes_per_image, notes=notes,
    )


async def _drive(
    send: Send, concurrency: int, end: float, max_requests: int, numbers: itertools.count[int]
) -> tuple[list[float], int, Counter[str]]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    images = 0
    first = next(numbers)  # request numbers are relative to the run: max_requests counts from here

    async def worker() -> None:
        nonlocal images
        while True:
            n = next(numbers)
            if n - first > max_requests or time.perf_counter() >= end:
                return
            sent_at = time.perf_counter()
            try:
                sent = await send(n)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # every failure is counted, none stops the run
                errors[error_code(error)] += 1
                continue
            latencies.append(time.perf_counter() - sent_at)
            images += sent.images
            errors.update(sent.errors)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, images, errors


def require_loopback(target: str) -> None:
    """Refuse to load anything but this machine: HOST:PORT or a URL whose host is a loopback address."""
    host = urlsplit(target).hostname if "://" in target else target.rpartition(":")[0].strip("[]")
    if not host:
        raise ValueError(f"cannot read a host from {target!r}")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve {host!r} ({target}): {error}") from None
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if remote:
        raise ValueError(f"{target}: the benchmark only loads this machine (loopback); {host} is {', '.join(remote)}")
