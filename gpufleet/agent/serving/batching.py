"""Dynamic batching on the event loop, with a batch-forming window that follows the traffic.

A batch runs as soon as it holds as many requests as the traffic can give it: the most requests
outstanding at once in recent cycles (a closed-loop client at concurrency 16 gives 16). A lone
request therefore runs at once, never waiting. While fewer are pending, the batch waits for more only
as long as they keep coming: the wait ends after a quiet spell of a few inter-arrival gaps (learned
from the traffic; at least 10 % of a batch's run time), or at the window's cap: ``max_delay``,
stretched to half a batch's run time for slow models, where a straggler left out waits a whole extra
forward pass. A fixed delay (max 32, 5 ms) cuts large batches short at high concurrency: a 64-request
wave takes longer than 5 ms to arrive on one core. Two half batches that alternate (one running while
the other queues) merge again: the queued one waits for the answered one's clients to come back.

Where a batch runs: inline on the loop thread while batches are quick (a thread hop costs tens of
microseconds), on one worker thread once ``SLOW_BATCHES`` batches in a row were slow: more than
``OFFLOAD_AFTER_S`` of CPU (a large model: the loop keeps reading and answering requests while the
forward pass runs) or more than ``BLOCKING_S`` of wall time (a handler that blocks; a shorter wall
time over little CPU is a preempted core on a busy machine, and one slow batch may be too), back
inline after ``PROBE_BATCHES`` quick ones, and always on the thread for CUDA (the loop decodes while
the GPU computes). A custom ``inference.py`` may block (I/O, sleeps), so its first batches run on the
thread until it has shown ``PROBE_BATCHES`` quick ones. The thread stays on a one-core process too:
there, keeping batches under ``BLOCKING_S`` inline took a large model's unbatched ``inference.py``
from 0.90-0.95 to 0.98-1.04 of the minimal server (``model.pt`` unchanged within noise), but p99 at
c=64 from 375 to 1340 ms (``scripts/bench-serving``, 2026-12-03): while the loop computes it reads
no socket, and the connections it reads last starve.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

RunBatch = Callable[[list[Any]], list[Any]]
BatchObserver = Callable[[int, float], None]   # (batch size, seconds in predict)
Placement = Literal["adaptive", "probe", "thread"]   # inline when quick / the same after probing / always a thread
Pace = Literal["quick", "slow", "suspect"]           # suspect: slow on the wall clock, CPU not read

OFFLOAD_AFTER_S = 0.001     # a batch using more CPU than this is slow
BLOCKING_S = 0.02           # ... and so is one taking longer than this on the clock
SLOW_BATCHES = 2            # slow batches in a row that move batches to the worker thread
PROBE_BATCHES = 8           # quick batches in a row that move them back inline
IDLE_GAPS = 4               # arrivals stopped: no request for this many mean inter-arrival gaps
MIN_IDLE_S = 100e-6         # ... and at least this long (one request's parse on a loaded core)
IDLE_SHARE = 0.1            # ... or 10 % of a batch's run time: what waiting in vain may cost a slow model
GAP_WEIGHT = 0.2            # EWMA weight of the newest inter-arrival gap


class BatcherClosed(Exception):
    """The model was unloaded while this request waited for its batch."""


class FormingWindow:
    """When pending requests run, or how long they wait for more: pure bookkeeping over the clock.

    Time spent queued behind a running batch is not waiting: the window opens when the batcher is free,
    and "quiet" is counted from the last arrival or the last batch's end, whichever is later (in a
    closed loop the next requests come only once the last batch is answered).
    """

    def __init__(self, max_batch: int, max_delay_s: float) -> None:
        self.max_batch, self.max_delay = max_batch, max_delay_s
        self.recent_peaks: deque[int] = deque([1], maxlen=8)   # most outstanding per recent batch
        self.gap = 0.0                    # EWMA of the quiet time before an arrival
        self.last_arrival = self.last_finish = float("-inf")
        self.last_run_s = 0.0

    def arrived(self, now: float) -> None:
        gap = min(now - max(self.last_arrival, self.last_finish), self.cap())
        self.gap += GAP_WEIGHT * (gap - self.gap)
        self.last_arrival = now

    def ran(self, peak_outstanding: int, seconds: float) -> None:
        self.recent_peaks.append(peak_outstanding)
        self.last_run_s = seconds

    def answered(self, now: float) -> None:
        self.last_finish = now

    def expected(self) -> int:
        return min(self.max_batch, max(self.recent_peaks))

    def cap(self) -> float:
        return max(self.max_delay, self.last_run_s / 2) if self.max_delay > 0 else 0.0

    def wait_until(self, pending: int, first_at: float, now: float) -> float | None:
        """The time to look again, or None: run what is pending now."""
        if pending >= self.expected() or self.max_delay <= 0:
            return None
        idle = max(MIN_IDLE_S, IDLE_GAPS * self.gap, IDLE_SHARE * self.last_run_s)
        opened = max(first_at, self.last_finish)
        until = min(opened + self.cap(), max(self.last_arrival, self.last_finish) + idle)
        return until if until > now else None


class Batcher:
    def __init__(self, run: RunBatch, max_batch: int, max_delay_s: float,
                 observe: BatchObserver | None = None, placement: Placement = "adaptive") -> None:
        self._run, self._max_batch, self._observe = run, max_batch, observe
        self._window = FormingWindow(max_batch, max_delay_s)
        self._placement = placement
        self._inline = placement == "adaptive"
        self._quick_streak = self._slow_streak = 0
        self._suspect = False     # the last batch was slow on the clock: read the CPU clock next time
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._outstanding = 0     # submitted and not yet answered
        self._peak = 0            # most outstanding since the last batch started
        self._first_at = 0.0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, item: Any) -> asyncio.Future[Any]:
        loop = self._loop or self._bind()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(BatcherClosed("model: unloaded (retry: the new version answers)"))
            return future
        now = loop.time()
        self._window.arrived(now)
        if not self._pending:
            self._first_at = now
        self._pending.append((item, future))
        self._outstanding += 1
        self._peak = max(self._peak, self._outstanding)
        if self._busy:
            return future           # the running batch flushes again when it ends
        if self._max_batch == 1:
            self._flush()           # unbatched: nothing can join, so no loop turn to wait for
        elif self._timer is None or len(self._pending) >= self._window.expected():
            self._cancel_timer()
            self._schedule()
        return future

    def close(self) -> None:
        """Fail what is still queued (a swap's drain timed out), so that it is answered now, not at the
        request timeout. Called from the watcher thread: the queue is emptied on the loop's thread."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False)    # a running batch still finishes and answers
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):    # the loop is already closed: nobody waits
                self._loop.call_soon_threadsafe(self._fail_pending)

    def _fail_pending(self) -> None:
        self._cancel_timer()
        batch, self._pending = self._pending, []
        error = BatcherClosed("model: unloaded while this request waited (retry: the new version answers)")
        self._finish(batch, [error] * len(batch), None)

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _schedule(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        loop = self._loop
        if self._busy or not self._pending or loop is None or self._closed:
            return
        until = self._window.wait_until(len(self._pending), self._first_at, loop.time())
        if until is not None:
            if self._timer is None:
                self._timer = loop.call_at(until, self._on_timer)
            return
        self._cancel_timer()
        batch = self._pending[:self._max_batch]
        del self._pending[:self._max_batch]
        peak, self._peak = self._peak, self._outstanding
        items = [item for item, _ in batch]
        if self._inline:
            self._finish(batch, *self._timed(items), peak=peak)
        else:
            self._busy = True
            task = loop.run_in_executor(self._worker(), self._timed, items)
            task.add_done_callback(lambda done: self._finish_threaded(batch, done, peak))
        if self._pending:
            self._schedule()

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="predict")
        return self._executor

    def _timed(self, items: list[Any]) -> tuple[list[Any], float, Pace]:
        """The results, the wall seconds, and the batch's pace (see the module's doc). The thread's CPU
        clock is a system call (microseconds in a VM): it is read only after a batch slow on the wall
        clock, to tell a slow model from a preempted core."""
        measure_cpu = self._suspect
        start, cpu_start = time.perf_counter(), time.thread_time() if measure_cpu else 0.0
        try:
            results = self._run(items)
        except Exception as exc:   # the runner isolates items itself; this is the last guard
            results = [exc] * len(items)
        seconds = time.perf_counter() - start
        pace: Pace = "quick"
        if seconds >= BLOCKING_S:
            pace = "slow"
        elif seconds >= OFFLOAD_AFTER_S:
            pace = ("suspect" if not measure_cpu else
                    "slow" if time.thread_time() - cpu_start >= OFFLOAD_AFTER_S else "quick")
        return results, seconds, pace

    def _place_next(self, pace: Pace) -> None:
        self._suspect = pace != "quick"
        if pace == "quick":
            self._quick_streak, self._slow_streak = self._quick_streak + 1, 0
            if self._quick_streak >= PROBE_BATCHES and self._placement != "thread":
                self._inline = True
        else:
            self._quick_streak = 0
            if pace == "slow":
                self._slow_streak += 1
                if self._slow_streak >= SLOW_BATCHES:
                    self._inline = False

    def _answered(self) -> None:
        """The last batch's answers went out (their tasks ran first): its clients may come back now."""
        if self._loop is not None:
            self._window.answered(self._loop.time())
        self._flush()

    def _finish_threaded(self, batch: list[tuple[Any, asyncio.Future[Any]]],
                         done: asyncio.Future[tuple[list[Any], float, Pace]], peak: int) -> None:
        self._busy = False
        pace: Pace
        try:
            results, seconds, pace = done.result()
        except BaseException as exc:
            results, seconds, pace = [exc] * len(batch), 0.0, "quick"
        self._finish(batch, results, seconds, pace, peak)
        if self._pending and self._max_batch == 1:
            self._schedule()

    def _finish(self, batch: list[tuple[Any, asyncio.Future[Any]]], results: list[Any],
                seconds: float | None, pace: Pace = "quick", peak: int = 0) -> None:
        self._outstanding -= len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():       # timed out while queued or running
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if seconds is not None:
            self._window.ran(peak, seconds)
            if self._max_batch > 1 and self._loop is not None:
                self._loop.call_soon(self._answered)   # after the answers' tasks, queued just now
            self._place_next(pace)
            if self._observe is not None:
                self._observe(len(batch), seconds)
