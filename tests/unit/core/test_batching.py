"""Dynamic batching logic (a recording fake backend is fine here: this tests the batcher)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.core.admission import Admission
from service.core.batching import Batcher, BatchingConfig
from service.errors import DeadlineExceeded, Internal, Overloaded


class RecordingBackend:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(10)
        self.sizes.append(len(batch))
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        return batch.reshape(len(batch), -1)[:, :2] * 2


def _item(value: float) -> np.ndarray:
    return np.full((1, 2, 1), value, dtype=np.float32)


def test_queued_requests_share_a_batch() -> None:
    """Requests that arrive while the model is busy are run together, up to max_batch_size."""
    backend = RecordingBackend()
    backend.release.clear()
    batcher = Batcher(backend, BatchingConfig(max_batch_size=4, max_delay_s=0.0), "t")
    first = batcher.submit(_item(0))
    time.sleep(0.05)  # the worker now holds `first` and waits on the backend
    rest = [batcher.submit(_item(i)) for i in range(1, 7)]
    backend.release.set()
    results = [f.result(5) for f in [first, *rest]]
    assert [float(r[0]) for r in results] == [2.0 * i for i in range(7)]
    assert backend.sizes == [1, 4, 2]
    batcher.close()


def test_cancelled_requests_do_not_take_a_slot() -> None:
    backend = RecordingBackend()
    backend.release.clear()
    batcher = Batcher(backend, BatchingConfig(max_batch_size=8, max_delay_s=0.0), "t")
    busy = batcher.submit(_item(0))
    time.sleep(0.05)
    gone = batcher.submit(_item(1))
    kept = batcher.submit(_item(2))
    assert gone.cancel()
    backend.release.set()
    assert float(kept.result(5)[0]) == 4.0 and busy.result(5) is not None
    assert backend.sizes == [1, 1]
    batcher.close()


def test_expired_deadline_fails_before_inference() -> None:
    backend = RecordingBackend()
    batcher = Batcher(backend, BatchingConfig(), "t")
    late = batcher.submit(_item(1), deadline=time.monotonic() - 1)
    with pytest.raises(DeadlineExceeded):
        late.result(5)
    assert backend.sizes == []
    batcher.close()


def test_admission_is_the_one_limit_and_refuses_with_retry_advice() -> None:
    """Past the limit a request is refused at once with RetryInfo-worthy advice; leaving frees the place."""
    admission = Admission(limit=2)

    async def scenario() -> None:
        with admission.admit(), admission.admit():
            assert admission.in_flight == 2
            with pytest.raises(Overloaded) as refused:
                with admission.admit():
                    pass
            assert refused.value.retry_after == 1.0 and admission.in_flight == 2
            assert not await admission.drained(0.05)
        assert admission.in_flight == 0 and await admission.drained(0.05)

    asyncio.run(scenario())


def test_a_batcher_never_refuses_what_admission_let_in() -> None:
    """The batcher's queue has no limit of its own: warm-up may queue a whole batch behind a busy model."""
    backend = RecordingBackend()
    backend.release.clear()
    batcher = Batcher(backend, BatchingConfig(max_batch_size=1, max_delay_s=0.0), "t")
    futures = [batcher.submit(_item(i)) for i in range(20)]
    backend.release.set()
    assert [float(f.result(5)[0]) for f in futures] == [2.0 * i for i in range(20)]
    batcher.close()


def test_model_exception_fails_only_its_batch() -> None:
    backend = RecordingBackend(fail=True)
    batcher = Batcher(backend, BatchingConfig(), "t")
    with pytest.raises(Internal):
        batcher.submit(_item(1)).result(5)
    backend.fail = False
    assert float(batcher.submit(_item(3)).result(5)[0]) == 6.0
    batcher.close()


def test_a_lone_input_does_not_wait_for_companions() -> None:
    """With nothing else being decoded, an input runs at once even under a long max_delay."""
    backend = RecordingBackend()
    batcher = Batcher(backend, BatchingConfig(max_batch_size=8, max_delay_s=60.0), "t")
    assert float(batcher.submit(_item(1)).result(10)[0]) == 2.0
    assert backend.sizes == [1]
    batcher.close()


def test_a_batch_waits_for_inputs_still_being_prepared() -> None:
    """An input announced by preparing() joins the batch that formed while it was decoded."""
    backend = RecordingBackend()
    batcher = Batcher(backend, BatchingConfig(max_batch_size=8, max_delay_s=60.0), "t")
    with batcher.preparing():
        first = batcher.submit(_item(1))
        time.sleep(0.1)  # the worker holds `first` and waits for the announced input
        assert not first.done()
        second_inputs = _item(2)
    second = batcher.submit(second_inputs)
    assert [float(f.result(10)[0]) for f in (first, second)] == [2.0, 4.0]
    assert backend.sizes == [2]
    batcher.close()
