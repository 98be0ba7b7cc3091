"""Dynamic batching: concurrent requests share one predict_fn call; a lone request never waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from gpufleet.agent.serving.batching import Batcher
from gpufleet.agent.serving.handler import Handler


def recording_runner(calls: list[int]) -> Any:
    def run(items: list[Any]) -> list[Any]:
        calls.append(len(items))
        return [item * 10 for item in items]
    return run


@pytest.mark.parametrize("threaded", [False, True])
def test_requests_arriving_together_share_one_batch(threaded: bool) -> None:
    calls: list[int] = []

    async def main() -> list[Any]:
        batcher = Batcher(recording_runner(calls), max_batch=8, max_delay_s=0.0, threaded=threaded)
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


def test_delay_is_waited_only_while_a_busy_stream_fills_the_batch() -> None:
    calls: list[int] = []

    async def main() -> None:
        batcher = Batcher(recording_runner(calls), max_batch=8, max_delay_s=30.0)
        await asyncio.gather(*(batcher.submit(i) for i in range(8)))   # traffic seen: batches of 8
        first = [batcher.submit(i) for i in range(4)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in first)    # waiting for the rest of a full batch
        rest = [batcher.submit(i) for i in range(4)]
        await asyncio.wait_for(asyncio.gather(*first, *rest), timeout=5)   # complete: flushed at once

    asyncio.run(main())
    assert calls == [8, 8]


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
