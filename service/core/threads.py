"""Which threads may run torch: keep OpenMP worker teams off long-lived threads other than inference.

libgomp (PyTorch's OpenMP on Linux) gives each thread that opens a parallel
region its own team of workers, kept until that thread exits. Once more than
one thread holds a team, libgomp counts more managed threads than cores and
"throttles": between parallel regions its workers sleep on a futex instead of
spinning, so every layer of a forward pass pays a wake-up. On this 2-core
machine ResNet18 ran slower on the inference thread, with dozens of context
switches per call, for as long as the thread that had loaded it was alive
(`python -m bench.openmp_teams`, bench/results/openmp-teams.txt). Loading on a
thread that exits afterwards, and running every served model on one inference
thread, leaves that thread the only holder of a team.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def run_on_exiting_thread(
    function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> Future[T]:
    """Run ``function`` on a new thread that ends when it returns; its future holds the outcome."""
    future: Future[T] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # handed to the caller through the future
            future.set_exception(error)

    threading.Thread(target=target, name=f"exiting-{function.__name__}", daemon=True).start()
    return future


def call_on_exiting_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Blocking form of :func:`run_on_exiting_thread`: return its result or raise its error."""
    return run_on_exiting_thread(function, *args, **kwargs).result()
