"""The live model slot: which loaded model answers requests, and safe swaps between versions.

A request binds to the model that is current when it arrives and keeps it to the end (its
``input_fn``, ``predict_fn`` and ``output_fn`` all come from one version). A swap replaces the
current model in one assignment; the old one is unloaded only after its in-flight count drains.
Requests are counted (on the loop thread) before they are served and the swap (on the watcher
thread) waits for that count, so a request never runs on a model that is being unloaded. A version
served by its own container (an endpoint's ``image:``) swaps the same way: the new container answers
``/ping`` before it becomes current, and the old one stops only after its requests finished.
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gpufleet.agent.serving.batching import Batcher, BatchObserver, Placement
from gpufleet.agent.serving.container import ServingContainer
from gpufleet.agent.serving.handler import Handler


@dataclass(eq=False)
class ModelVersion:
    """What the slot needs of any version it serves, in process or in a container: its identity, the
    ``x-gpufleet-model`` header value naming it, and the requests holding it (see ``ModelSlot.acquire``)."""

    name: str
    version: int
    # Keyword-only so that the kinds' own fields, with and without defaults, follow name and version.
    in_flight: int = field(default=0, kw_only=True)
    label: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.label = f"{self.name}:{self.version}".encode()


@dataclass(eq=False)
class LoadedModel(ModelVersion):
    handler: Handler
    batcher: Batcher
    directory: Path | None = None

    @property
    def healthy(self) -> bool:
        return True   # a loaded in-process model has nothing else to ask

    def unload(self) -> None:
        self.batcher.close()
        self.handler.model = None
        # The watcher froze the heap after loading this model (gc.freeze): frozen objects are never
        # collected, so the model's reference cycles would stay alive. The watcher freezes again.
        gc.unfreeze()
        gc.collect()
        if self.handler.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(eq=False)
class ContainerModel(ModelVersion):
    """A model version served by its own container (an endpoint's ``image:``): requests are forwarded."""

    container: ServingContainer
    directory: Path

    @property
    def healthy(self) -> bool:
        return self.container.healthy

    def unload(self) -> None:
        self.container.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


ServedModel = LoadedModel | ContainerModel


def build_model(name: str, version: int, handler: Handler, max_batch: int, max_delay_s: float,
                observe: BatchObserver | None = None, directory: Path | None = None) -> LoadedModel:
    """A loaded model with its own batcher. Batches run on a worker thread for CUDA (the loop decodes
    while the GPU computes); a custom handler's first batches too (its code may block), and any batch
    slower than a thread hop is worth (see ``batching``)."""
    placement: Placement = ("thread" if handler.device.type == "cuda" else
                            "probe" if handler.custom else "adaptive")
    batcher = Batcher(handler.run_batch, max_batch, max_delay_s, observe, placement)
    return LoadedModel(name, version, handler, batcher, directory)


class ModelSlot:
    def __init__(self) -> None:
        self.current: ServedModel | None = None
        # The last good request (body, content type, accept): warms up the next model.
        self.warmup_sample: tuple[bytes, str, str] | None = None

    def identity(self) -> tuple[str, int] | None:
        model = self.current
        return (model.name, model.version) if model else None

    def acquire(self) -> ServedModel | None:
        """The current model, counted in flight until ``release``: a swap waits for it to finish.

        Read, count, then check it is still current: a swap that landed between the read and the count
        has not seen the count, so the request lets go of the old model and takes the new one.
        """
        while True:
            model = self.current
            if model is None:
                return None
            model.in_flight += 1
            if model is self.current:
                return model
            model.in_flight -= 1

    @staticmethod
    def release(model: ServedModel) -> None:
        model.in_flight -= 1

    def swap(self, new: ServedModel, drain_timeout_s: float) -> ServedModel | None:
        """Make ``new`` current, wait for the old model's requests to finish, unload it, return it."""
        old, self.current = self.current, new
        if old is None:
            return None
        deadline = time.monotonic() + drain_timeout_s
        while old.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        old.unload()
        return old

    def run_warmup(self, model: LoadedModel) -> None:
        """Send the last good request through the new model before it takes traffic (first-call costs:
        TorchScript profiling, CUDA context and kernels). Any failure here refuses the model."""
        sample = self.warmup_sample
        if sample is None:
            return
        body, content_type, accept = sample
        handler = model.handler
        data = handler.input_fn(body, content_type)
        for _ in range(2):     # TorchScript specializes on the second call
            (prediction,) = handler.run_batch([data])
            if isinstance(prediction, BaseException):
                raise prediction
        handler.encode(prediction, accept)
