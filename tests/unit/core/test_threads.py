"""run_on_exiting_thread: the work runs on a fresh thread that is gone once the result is in."""

from __future__ import annotations

import threading
import time

import pytest

from service.core.threads import call_on_exiting_thread, run_on_exiting_thread


def _wait_gone(thread: threading.Thread, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not thread.is_alive()


def test_result_comes_back_and_the_thread_exits() -> None:
    """The function runs off the calling thread, and that thread ends after returning."""
    ran_on: list[threading.Thread] = []

    def work(a: int, b: int = 0) -> int:
        ran_on.append(threading.current_thread())
        return a + b

    assert run_on_exiting_thread(work, 2, b=3).result(5) == 5
    assert ran_on[0] is not threading.current_thread()
    assert _wait_gone(ran_on[0])


def test_errors_reach_the_caller() -> None:
    """An exception in the function is raised by the blocking form, with its own type and message."""

    def fail() -> None:
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        call_on_exiting_thread(fail)
