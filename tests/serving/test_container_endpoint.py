"""An endpoint's ``image:`` under the real serving agent: SageMaker's bring-your-own-container serving contract
with real podman + runc and an image built here from the cached Debian rootfs (``tests/support/images/serve``).

This machine has no GPU and no NVIDIA container toolkit, so no CDI spec: the containers get no GPU devices
here (the CDI flags are checked in ``tests/training/test_container_jobs.py``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from gpufleet.agent.serving.container import ServingImage
from gpufleet.aws import AwsClients
from gpufleet.schema.container_settings import ContainerSettings
from gpufleet.schema.runtime import TeamRuntime
from tests.serving.conftest import Agent, Team
from tests.support.containers import (  # noqa: F401  (podman and serve_image are fixtures)
    Podman,
    podman,
    serve_image,
    serve_model_artifact,
    tarball,
)
from tests.support.traffic import Traffic as LoopedTraffic

pytestmark = [pytest.mark.timeout(300)]
ENDPOINT = "byoc"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
StartAgent = Callable[..., Agent]


def with_image(runtime: TeamRuntime, image: str) -> TeamRuntime:
    """The team runtime with an endpoint serving ``image`` (the front's addresses are not used here)."""
    doc = runtime.model_dump()
    doc["endpoints"][ENDPOINT] = {"alb_dns": "unused", "listener_arn": "unused", "rule_arn": "unused",
                                  "target_groups": {"blue": "unused", "green": "unused"},
                                  "asgs": {"blue": "unused", "green": "unused"}, "image": image}
    return TeamRuntime.model_validate(doc)


def _containers(podman: Podman, agent_id: str) -> list[str]:  # noqa: F811
    found = podman.run("ps", "--all", "--format", "{{.Names}}", "--filter", f"label=gpufleet.agent={agent_id}")
    return found.stdout.decode().split()


def _wait_event(agent: Agent, event: str, timeout_s: float = 120, **fields: Any) -> dict[str, Any]:
    """The agent's latest ``event`` with ``fields``, once it has logged one."""
    deadline = time.monotonic() + timeout_s
    while not (found := [e for e in agent.events()
                         if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]):
        assert time.monotonic() < deadline, agent.log.read_text()[-3000:]
        time.sleep(0.2)
    return found[-1]


class Traffic(LoopedTraffic[tuple[int, Any]]):
    """Invokes the agent in a loop, recording (status, version answered) for every request."""

    def session(self) -> httpx.Client:
        return httpx.Client(trust_env=False, timeout=30)

    def call(self, session: httpx.Client) -> tuple[int, Any]:
        try:
            r = session.post(f"{self.url}/invocations", content=b"[[1, 2]]",
                             headers={"content-type": "application/json"})
            return r.status_code, r.json().get("version") if r.status_code == 200 else r.text
        except httpx.HTTPError as exc:
            return 0, repr(exc)

    def versions(self) -> list[Any]:
        return [version for _, version in self.results]


def test_container_endpoint_serves_the_contract_and_hot_swaps_without_failing_a_request(
        team: Team, start_agent: StartAgent, podman: Podman, serve_image: str) -> None:  # noqa: F811
    # Repository-relative, as a team writes its own images: local mode resolves it to the machine's images.
    relative = serve_image.removeprefix("localhost/")
    team.publish_model("byoc-model", 1, serve_model_artifact(1, 1.0))
    team.point_endpoint(ENDPOINT, "blue", "byoc-model", 1)
    agent = start_agent(ENDPOINT, runtime=with_image(team.runtime, relative), containers=podman.agent_settings())
    agent.wait_ready(timeout_s=120)
    agent_id = f"i-{agent.url.rsplit(':', 1)[1]}"
    assert _wait_event(agent, "serving_image")["image"] == serve_image

    r = httpx.post(f"{agent.url}/invocations", content=b"[[1, 2], [3]]",
                   headers={"content-type": "application/json", "accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-gpufleet-model"] == "byoc-model:1"
    assert r.json() == {"version": 1, "predictions": [3.0, 3.0], "content_type": "application/json",
                        "accept": "application/json", "custom_attributes": None, "argv": [],
                        "model_writable": False, "pid1": True}
    assert CUSTOM_ATTRIBUTES not in r.headers   # none asked, none set: none answered
    # Custom attributes reach the container and its own come back, as SageMaker passes them; a request's
    # longer than SageMaker takes is refused, a container's is dropped (the inference still answers).
    traced = httpx.post(f"{agent.url}/invocations", content=b"[[1]]",
                        headers={CUSTOM_ATTRIBUTES: "trace=7f3a; tenant=acme"}, timeout=30)
    assert traced.json()["custom_attributes"] == "trace=7f3a; tenant=acme"
    assert traced.headers[CUSTOM_ATTRIBUTES] == "trace=7f3a; tenant=acme; version=1"
    too_long = httpx.post(f"{agent.url}/invocations", content=b"[[1]]", headers={CUSTOM_ATTRIBUTES: "x" * 1025},
                          timeout=30)
    assert too_long.status_code == 400
    assert too_long.json()["error"] == (f"{CUSTOM_ATTRIBUTES}: 1025 characters, more than 1024 (send at most "
                                        "1024 visible US-ASCII characters, as SageMaker's InvokeEndpoint takes)")
    oversized = httpx.post(f"{agent.url}/invocations", content=b"[[1]]", headers={CUSTOM_ATTRIBUTES: "oversized"},
                           timeout=30)
    assert oversized.status_code == 200 and CUSTOM_ATTRIBUTES not in oversized.headers
    assert "1500 characters, more than 1024" in _wait_event(agent, "custom_attributes_dropped")["reason"]
    # The container's statuses, bodies and content types reach the client as they are.
    bad = httpx.post(f"{agent.url}/invocations", content=b"nope", headers={"content-type": "text/plain"}, timeout=30)
    assert (bad.status_code, bad.text, bad.headers["content-type"]) == (400, "body: not JSON rows of numbers",
                                                                        "text/plain")
    csv = httpx.post(f"{agent.url}/invocations", content=b"[[1]]", headers={"accept": "text/csv"}, timeout=30)
    assert csv.status_code == 406
    assert any(e.get("line") == "serving model version 1 on 8080" for e in agent.events()
               if e.get("event") == "container_output")   # the container's output is in the agent's log
    (first,) = _containers(podman, agent_id)

    team.publish_model("byoc-model", 2, serve_model_artifact(2, 10.0))
    with Traffic(agent.url) as traffic:
        while len(traffic.results) < 20:
            time.sleep(0.05)
        team.point_endpoint(ENDPOINT, "blue", "byoc-model", 2)
        swapped = _wait_event(agent, "model_swapped", version=2)
        count = len(traffic.results)
        while len(traffic.results) < count + 20:
            time.sleep(0.05)
    assert swapped["previous"] == "byoc-model:1"
    failed = [result for result in traffic.results if result[0] != 200]
    assert failed == [], failed[:5]
    versions = traffic.versions()
    assert versions == sorted(versions) and versions[0] == 1 and versions[-1] == 2   # 1s, then 2s for good
    (second,) = _containers(podman, agent_id)   # the old version's container stopped after its requests
    assert second != first
    assert httpx.post(f"{agent.url}/invocations", json=[[1, 2]], timeout=30).json()["predictions"] == [30.0]

    # A version whose container dies before /ping answers is refused with its last lines; v2 serves on.
    team.publish_model("byoc-model", 3, tarball({"README": b"no model.json"}))
    team.point_endpoint(ENDPOINT, "blue", "byoc-model", 3)
    refused = _wait_event(agent, "model_refused", version=3)
    assert " exited with code 1 before /ping answered; " in refused["reason"]
    assert "FileNotFoundError" in refused["reason"]
    assert httpx.post(f"{agent.url}/invocations", json=[[1]], timeout=30).json()["version"] == 2

    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(60) == 0
    assert _containers(podman, agent_id) == []   # the agent takes its container with it


def test_agent_ping_is_its_containers_ping(team: Team, start_agent: StartAgent, podman: Podman,  # noqa: F811
                                           serve_image: str) -> None:  # noqa: F811
    team.publish_model("pinged", 1, serve_model_artifact(1, 1.0))
    team.point_endpoint(ENDPOINT, "blue", "pinged", 1)
    agent = start_agent(ENDPOINT, runtime=with_image(team.runtime, serve_image), containers=podman.agent_settings())
    agent.wait_ready(timeout_s=120)
    (name,) = _containers(podman, f"i-{agent.url.rsplit(':', 1)[1]}")
    assert podman.run("kill", name).returncode == 0
    _wait_event(agent, "container_exited")
    ping = httpx.get(f"{agent.url}/ping", timeout=10)
    assert ping.status_code == 503
    assert ping.json() == {"error": f"container {name}: /ping is not answering 200"}
    invoked = httpx.post(f"{agent.url}/invocations", json=[[1]], timeout=30)
    assert invoked.status_code == 503 and invoked.json()["error"].startswith("container: not answering")


def test_serving_containers_get_the_gpus_the_cdi_spec_describes(tmp_path: Path) -> None:
    """No GPU here: a CDI spec file stands in for the one nvidia-ctk writes on GPU hosts."""
    spec = tmp_path / "nvidia.yaml"
    settings = ContainerSettings(command=["podman"], cdi_specs=[str(spec)])
    image = ServingImage(cast(AwsClients, None), settings, "localhost/serve:1", "i-1", 60.0)
    argv = image.argv("c", tmp_path / "model", 40123)
    assert "nvidia.com/gpu=all" not in argv
    assert argv[-2:] == ["localhost/serve:1", "serve"]
    assert argv[argv.index("--publish"):argv.index("--publish") + 2] == ["--publish", "127.0.0.1:40123:8080"]
    assert f"{tmp_path / 'model'}:/opt/ml/model:ro" in argv
    spec.write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    argv = image.argv("c", tmp_path / "model", 40123)
    assert argv[argv.index("--device") + 1] == "nvidia.com/gpu=all"
