"""Dynamic batching: concurrent requests share one predict_fn call; a lone request never waits; the
forming window follows the traffic; quick batches run inline and slow ones on the worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import torch

from gpufleet.agent.serving import batching
from gpufleet.agent.serving.batching import (
    IDLE_SHARE,
    PROBE_BATCHES,
    Batcher,
    BatcherClosed,
    FormingWindow,
    Placement,
)
from gpufleet.agent.serving.handler import Handler


def recording_runner(calls: list[int]) -> Any:
    def run(items: list[Any]) -> list[Any]:
        calls.append(len(items))
        return [item * 10 for item in items]
    return run


@pytest.mark.parametrize("placement", ["adaptive", "thread"])
def test_requests_arriving_together_share_one_batch(placement: Placement) -> None:
    calls: list[int] = []

    async def main() -> list[Any]:
        batcher = Batcher(recording_runner(calls), max_batch=8, max_delay_s=0.0, placement=placement)
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        finally:
            batcher.close()

    assert asyncio.run(main()) == [i * 10 for i in range(20)]
    assert calls == [8, 8, 4]


def test_lone_request_does_not_wait_out_the_batch_delay() -> None:
    calls: list[int] = []

    async def main() -> None:
        batcher = Batcher(recording_runner(calls), max_batch=64, max_delay_s=30.0)
        for i in range(3):   # one at a time, as at concurrency 1: each must run at once
            assert await asyncio.wait_for(batcher.submit(i), timeout=5) == i * 10

    asyncio.run(main())
    assert calls == [1, 1, 1]


def test_a_full_batch_waits_only_while_requests_keep_arriving() -> None:
    window = FormingWindow(max_batch=64, max_delay_s=0.005)
    assert window.wait_until(pending=1, first_at=0.0, now=0.0) is None     # a lone request runs at once
    window.ran(peak_outstanding=16, seconds=0.0001)                # traffic seen: 16 at once
    window.answered(0.9)
    for i in range(8):
        window.arrived(1.0 + i * 50e-6)                                     # one request every 50 us
    last = 1.0 + 7 * 50e-6
    until = window.wait_until(pending=8, first_at=1.0, now=last)
    assert until is not None and last < until < last + 0.001                # waits a few gaps for more
    assert window.wait_until(pending=8, first_at=1.0, now=last + 0.001) is None   # they stopped coming
    assert window.wait_until(pending=16, first_at=1.0, now=last) is None    # the batch is as full as it gets


def test_the_window_stretches_for_a_slow_model_so_stragglers_make_the_batch() -> None:
    quick, slow = FormingWindow(64, 0.005), FormingWindow(64, 0.005)
    quick.ran(64, 0.0005)
    quick.answered(0.0)
    slow.ran(64, 0.040)
    slow.answered(0.0)      # a 40 ms forward: a straggler left out would wait 40 ms more
    assert quick.cap() == 0.005 and slow.cap() == 0.020
    for window in (quick, slow):
        for i in range(1, 41):     # a 64-request wave still arriving after 8 ms
            window.arrived(i * 200e-6)
    now = 40 * 200e-6
    assert quick.wait_until(pending=40, first_at=200e-6, now=now) is None
    assert slow.wait_until(pending=40, first_at=200e-6, now=now) is not None


def test_requests_queued_behind_a_running_batch_wait_for_the_answered_clients() -> None:
    window = FormingWindow(64, 0.005)
    window.ran(64, 0.040)
    window.answered(1.0)   # batch A ran 40 ms while half the clients queued from t=0.96
    until = window.wait_until(pending=32, first_at=0.96, now=1.0)
    assert until is not None and until >= 1.0 + IDLE_SHARE * 0.040   # A's clients come back: wait for them
    assert window.wait_until(pending=32, first_at=0.96, now=1.0 + 0.021) is None   # up to the cap


def test_close_answers_queued_requests_at_once() -> None:
    release = threading.Event()

    def blocked(items: list[Any]) -> list[Any]:
        release.wait(10)
        return items

    async def main() -> list[Any]:
        batcher = Batcher(blocked, max_batch=1, max_delay_s=0.0, placement="thread")
        running = batcher.submit("running")
        queued = [batcher.submit(i) for i in range(3)]
        await asyncio.sleep(0.05)
        batcher.close()     # as a swap whose drain timed out does
        outcomes = await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), timeout=5)
        release.set()
        assert await running == "running"      # the batch already running still answers
        return outcomes

    outcomes = asyncio.run(main())
    assert all(isinstance(o, BatcherClosed) for o in outcomes), outcomes


# Thresholds far above a quick call's time, so that a loaded machine does not make a quick call slow, and a
# blocking threshold far above a compute call's time on the clock, so that it does not make one blocking.
OFFLOAD_S, BLOCK_S = 0.05, 1.0


def _placing_runner(threads: list[str], slow_calls: set[int], how: str) -> Any:
    def run(items: list[Any]) -> list[Any]:
        if len(threads) in slow_calls:
            if how == "compute":      # a large model: CPU spent in the call
                end = time.thread_time() + OFFLOAD_S * 1.2
                while time.thread_time() < end:
                    pass
            else:                     # "blocks": a handler waiting on I/O; "preempted": a busy core
                time.sleep(BLOCK_S * 1.2 if how == "blocks" else OFFLOAD_S * 2)
        threads.append("loop" if threading.current_thread() is threading.main_thread() else "worker")
        return items
    return run


@pytest.mark.parametrize(("placement", "how", "slow", "expected"), [
    # quick batches run inline, and one slow batch changes nothing
    ("adaptive", "compute", {1}, ["loop"] * 4),
    # after two slow ones in a row batches run on the worker, and back inline once quick again (the first
    # slow batch only makes the next one read the CPU clock)
    ("adaptive", "compute", {1, 2, 3}, ["loop"] * 4 + ["worker"] * PROBE_BATCHES + ["loop"]),
    ("adaptive", "blocks", {1, 2}, ["loop"] * 3 + ["worker"] * PROBE_BATCHES + ["loop"]),
    # a few ms on the clock but no CPU: a preempted core, not a slow model
    ("adaptive", "preempted", {1, 2}, ["loop"] * 4),
    # a custom handler proves itself quick on the worker first
    ("probe", "compute", {1}, ["worker"] * (2 + PROBE_BATCHES) + ["loop"]),
])
def test_batches_run_inline_while_quick_and_on_the_worker_once_slow(placement: Placement, how: str,
                                                                    slow: set[int], expected: list[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batching, "OFFLOAD_AFTER_S", OFFLOAD_S)
    monkeypatch.setattr(batching, "BLOCKING_S", BLOCK_S)
    threads: list[str] = []

    async def main() -> None:
        batcher = Batcher(_placing_runner(threads, slow, how), max_batch=1, max_delay_s=0.0, placement=placement)
        for i in range(len(expected)):
            await batcher.submit(i)
        batcher.close()

    asyncio.run(main())
    assert threads == expected


def _handler(predict: Any) -> Handler:
    return Handler(model=None, input_fn=lambda b, c: b, predict_fn=predict, output_fn=lambda p, a: b"",
                   custom=False, device=torch.device("cpu"))


def test_handler_batches_same_shaped_inputs_and_splits_the_output() -> None:
    seen: list[tuple[int, ...]] = []

    def predict(data: torch.Tensor, model: Any) -> torch.Tensor:
        seen.append(tuple(data.shape))
        return data.sum(dim=-1, keepdim=True)

    items = [torch.ones(1, 3), torch.ones(2, 3) * 2, torch.ones(1, 5), torch.ones(3)]
    results = _handler(predict).run_batch(items)
    assert [r.tolist() for r in results] == [[[3.0]], [[6.0], [6.0]], [[5.0]], [3.0]]
    assert sorted(seen) == sorted([(3, 3), (1, 5), (3,)])   # shapes that can't join run alone


def test_a_failing_item_fails_alone_and_a_non_batch_output_falls_back_to_single_calls() -> None:
    def predict(data: torch.Tensor, model: Any) -> Any:
        if (data < 0).any():
            raise ValueError("negative")
        return float(data.sum()) if data.shape[0] == 1 else "not a batch"

    results = _handler(predict).run_batch([torch.ones(1, 2), -torch.ones(1, 2), torch.ones(1, 2) * 3])
    assert results[0] == 2.0 and results[2] == 6.0
    assert isinstance(results[1], ValueError)
