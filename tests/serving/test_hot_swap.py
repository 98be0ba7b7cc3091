"""Hot-swap defects (issue 13): each test failed before its fix.

Real TorchScript models, real ``code/inference.py`` imports, the real watcher against a moto server;
the swap race is forced by swapping at the exact moment a request reads the current model.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path
from typing import Any

import httpx
import torch

from gpufleet.agent.serving.app import Limits, ServingApp
from gpufleet.agent.serving.handler import load_handler
from gpufleet.agent.serving.metrics import ServingMetrics
from gpufleet.agent.serving.models import LoadedModel, ModelSlot
from gpufleet.agent.serving.watcher import ModelWatcher
from gpufleet.aws import AwsClients
from gpufleet.schema.serving_settings import ServingSettings
from tests.serving.conftest import Constant, Team, loaded, pack, scripted_model_dir

HELPER_INFERENCE_PY = '''
import helpers


def predict_fn(data, model):
    return model(data) * 0 + helpers.VERSION
'''


def test_each_version_imports_its_own_helper_modules(tmp_path: Path) -> None:
    answers = []
    for version in (1, 2):
        model_dir = scripted_model_dir(tmp_path / f"v{version}", Constant(0.0), HELPER_INFERENCE_PY)
        (model_dir / "code" / "helpers.py").write_text(f"VERSION = {version}\n")
        handler = load_handler(model_dir, torch.device("cpu"))
        answers.append(float(handler.predict_fn(torch.zeros(1, 1), handler.model)))
    assert answers == [1.0, 2.0]


CYCLIC_INFERENCE_PY = '''
import torch


class Wrapped:
    """A model object in a reference cycle, as many real ones are (modules pointing at parents)."""

    def __init__(self, module):
        self.module, self.me = module, self

    def __call__(self, x):
        return self.module(x)


def model_fn(model_dir):
    return Wrapped(torch.jit.load(model_dir + "/model.pt"))
'''


def test_a_swapped_out_model_is_freed_although_the_heap_was_frozen(team: Team, tmp_path: Path) -> None:
    for version in (1, 2):
        model_dir = scripted_model_dir(tmp_path / f"v{version}", Constant(version), CYCLIC_INFERENCE_PY)
        team.publish_model("cyc", version, pack(model_dir))
    clients = AwsClients.create(team.runtime.region, team.emu.endpoint)
    slot = ModelSlot()
    watcher = ModelWatcher(clients.client("dynamodb"), clients.s3, team.runtime.tables, "cyc", "blue",
                           tmp_path / "work", slot, ServingMetrics(), ServingSettings(), torch.device("cpu"))
    try:
        team.point_endpoint("cyc", "blue", "cyc", 1)
        assert watcher.check_once()          # loads v1, then freezes the heap
        assert slot.current is not None
        first = weakref.ref(slot.current.handler.model)
        team.point_endpoint("cyc", "blue", "cyc", 2)
        assert watcher.check_once()
        assert slot.identity() == ("cyc", 2)
        assert first() is None, "the old model's cycle survived the swap in the frozen generation"
    finally:
        gc.unfreeze()   # leave the test process's collector as it was


class SwapOnFirstRead(ModelSlot):
    """Lands a swap (on another thread, as the watcher does) right after a request reads the model."""

    def __init__(self, first: LoadedModel, second: LoadedModel) -> None:
        super().__init__()
        self._current: LoadedModel | None = first
        self.second, self.swapped = second, False

    @property
    def current(self) -> LoadedModel | None:
        model = self._current
        if not self.swapped:
            self.swapped = True
            swapper = threading.Thread(target=self.swap, args=(self.second, 5.0))
            swapper.start()
            swapper.join(1.0)   # a swap that waits for this request's count cannot finish here
        return model

    @current.setter
    def current(self, model: LoadedModel | None) -> None:
        self._current = model


def test_a_swap_between_reading_the_model_and_counting_the_request_fails_nothing(tmp_path: Path) -> None:
    first = loaded(scripted_model_dir(tmp_path / "v1", Constant(1.0)), version=1)
    second = loaded(scripted_model_dir(tmp_path / "v2", Constant(2.0)), version=2)
    slot = SwapOnFirstRead(first, second)
    app = ServingApp(slot, ServingMetrics(), Limits(1 << 20, 5.0))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
            return await http.post("/invocations", json=[[0.0]])

    response = asyncio.run(call())
    assert slot.swapped
    assert response.status_code == 200, response.text
    answered: Any = response.json()
    assert (answered, response.headers["x-gpufleet-model"]) in (([[1.0]], "m:1"), ([[2.0]], "m:2"))
