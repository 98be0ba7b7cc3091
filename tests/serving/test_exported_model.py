"""A ``torch.export`` program (``model.pt2``) with no inference code serves: the format after TorchScript."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import torch

from tests.serving.conftest import Agent, Team, pack


class Doubler(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_exported_program_without_inference_code_serves_batches_and_refuses_a_wrong_shape(
        team: Team, start_agent: Callable[..., Agent], tmp_path: Path) -> None:
    model_dir = tmp_path / "exported"
    model_dir.mkdir()
    program = torch.export.export(Doubler().eval(), (torch.zeros(2, 3),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(model_dir / "model.pt2"))
    team.publish_model("exported", 1, pack(model_dir))
    team.point_endpoint("pt2", "blue", "exported", 1)
    agent = start_agent("pt2")
    agent.wait_ready(timeout_s=90)

    one = httpx.post(f"{agent.url}/invocations", json=[[1.0, 2.0, 3.0]], timeout=30)
    assert one.status_code == 200, one.text
    assert one.json() == [[6.0, 2.0]]
    many = httpx.post(f"{agent.url}/invocations", json=[[1.0, 0.0, 0.0]] * 5, timeout=30)
    assert many.status_code == 200 and many.json() == [[1.0, 2.0]] * 5
    wrong = httpx.post(f"{agent.url}/invocations", json=[[1.0, 2.0]], timeout=30)
    assert wrong.status_code == 400 and "shape (1, 2)" in wrong.json()["error"]
