"""A model's code/requirements.txt is installed before its inference.py loads (from a wheelhouse, no
index); a version whose requirement pip cannot find is refused with pip's line, and the current one serves on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.serving.conftest import Agent, Constant, Team, pack, scripted_model_dir
from tests.support.wheels import TINY_GREETING, TINY_MODULE, TINY_PACKAGE, build_tiny_wheelhouse

INFERENCE_PY = f"""import json
import {TINY_MODULE}


def output_fn(prediction, accept):
    return json.dumps({{"greeting": {TINY_MODULE}.GREETING, "value": prediction[0][0].item()}})
"""


def _model(root: Path, value: float, requirements: str) -> bytes:
    model_dir = scripted_model_dir(root, Constant(value), INFERENCE_PY)
    (model_dir / "code" / "requirements.txt").write_text(requirements)
    return pack(model_dir)


def test_model_requirements_install_and_an_unfindable_one_is_refused_with_pips_line(
        team: Team, start_agent: Callable[..., Agent], tmp_path: Path) -> None:
    wheelhouse = build_tiny_wheelhouse(tmp_path)
    team.publish_model("greeter", 1, _model(tmp_path / "v1", 1.0, f"{TINY_PACKAGE}==1.0\n"))
    team.point_endpoint("greet", "blue", "greeter", 1)
    agent = start_agent("greet", pip={"wheelhouse": str(wheelhouse)})
    agent.wait_ready(timeout_s=120)
    r = httpx.post(f"{agent.url}/invocations", json=[[0.0, 1.0]], timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"greeting": TINY_GREETING, "value": 1.0}

    team.publish_model("greeter", 2, _model(tmp_path / "v2", 2.0, "gpufleet-no-such-package==9.9\n"))
    team.point_endpoint("greet", "blue", "greeter", 2)
    deadline = time.monotonic() + 120
    while not (refused := [e for e in agent.events() if e.get("event") == "model_refused"]):
        assert time.monotonic() < deadline, agent.log.read_text()[-2000:]
        time.sleep(0.2)
    assert refused[0]["version"] == 2
    assert refused[0]["reason"].startswith("code/requirements.txt: pip failed: ERROR: ")
    assert refused[0]["reason"].endswith("No matching distribution found for gpufleet-no-such-package==9.9")
    assert httpx.post(f"{agent.url}/invocations", json=[[0.0]], timeout=30).json()["value"] == 1.0
