"""An endpoint with ``image:`` in the local cloud: its model is registered (``--for-image``) and approved,
deployed through the guarded rollout (the local cloud's serving agents run the image with real podman + runc),
invoked with the CLI, then rolled to a second version under traffic through the local router, with no failed
request and the answers changing.

No GPU here: the containers get no GPU devices (the CDI flags are checked in tests/training/test_container_jobs.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from gpufleet.cli.main import cli
from gpufleet.invoke import invoke_once
from gpufleet.local.cloud import router_urls
from gpufleet.local.emulator import Emulator
from gpufleet.schema.runtime import TeamRuntime
from tests.cli.conftest import local_cloud_team
from tests.support.containers import Podman, podman, serve_image, serve_model_artifact  # noqa: F401  (fixtures)
from tests.support.traffic import Traffic as LoopedTraffic

Served = tuple[Path, TeamRuntime]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


@pytest.fixture
def container_team(moto_server: Emulator, tmp_path: Path, repo_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                   request: pytest.FixtureRequest, podman: Podman, serve_image: str) -> Iterator[Served]:  # noqa: F811
    # The local cloud's agents run a plain `podman` (default `containers:` settings), which reads this machine's
    # runtime settings (runc, cgroupfs) from CONTAINERS_CONF: they inherit it from the local cloud.
    monkeypatch.setenv("CONTAINERS_CONF", str(podman.conf))
    image = serve_image.removeprefix("localhost/")   # repository-relative: local images in local mode
    with local_cloud_team(moto_server, tmp_path, repo_env, monkeypatch, request, image=image) as served:
        yield served


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _approved(tmp_path: Path, version: int, scale: float) -> None:
    """Registered with the CLI (its format is the image's: --for-image) and approved."""
    artifact = tmp_path / f"model-{version}.tar.gz"
    artifact.write_bytes(serve_model_artifact(version, scale))
    code, out = _run("model", "register", "byoc", "--artifact", str(artifact), "--json")
    assert code == 2 and "pass --for-image if an endpoint's image serves it" in out, out
    code, out = _run("model", "register", "byoc", "--artifact", str(artifact), "--for-image", "--json")
    assert code == 0, out
    record = json.loads(out)
    assert (record["version"], record["lineage"]["serves_in"]) == (version, "image")
    code, out = _run("model", "approve", f"byoc:{version}")
    assert code == 0, out


def _deploy(version: int) -> None:
    code, out = _run("endpoint", "deploy", "web", "--model", f"byoc:{version}", "--strategy", "canary",
                     "--bake-seconds", "3", "--healthy-timeout", "120")
    assert code == 0, out


class Traffic(LoopedTraffic[tuple[int, Any]]):
    """Invokes the endpoint through the local router in a loop: (status, version answered) per request."""

    def call(self, session: Any) -> tuple[int, Any]:
        status, body = invoke_once(self.url, b"[[1, 2]]", "application/json", "application/json", 30)
        return status, json.loads(body)["version"] if status == 200 else body[:200]


def test_container_endpoint_rolls_out_serves_and_moves_to_a_new_version_without_failing_a_request(
        container_team: Served, tmp_path: Path) -> None:
    root, rt = container_team
    _approved(tmp_path, 1, 1.0)
    _deploy(1)
    code, out = _run("endpoint", "invoke", "web", "--data", "[[1, 2], [3]]")
    assert code == 0, out
    answer = json.loads(out.strip().splitlines()[-1])
    assert (answer["version"], answer["predictions"], answer["argv"]) == (1, [3.0, 3.0], [])
    # The router passes custom attributes both ways, as the load balancer does.
    traced = httpx.post(f"{router_urls(root)[f'{rt.team}/web']}/invocations", content=b"[[1]]", timeout=30,
                        headers={"Content-Type": "application/json", CUSTOM_ATTRIBUTES: "trace=7f3a"})
    assert traced.json()["custom_attributes"] == "trace=7f3a", traced.text
    assert traced.headers[CUSTOM_ATTRIBUTES] == "trace=7f3a; version=1"

    _approved(tmp_path, 2, 10.0)
    with Traffic(router_urls(root)[f"{rt.team}/web"]) as traffic:
        _deploy(2)
        done = len(traffic.results)
        while len(traffic.results) < done + 10:   # answers after the rollout finished
            threading.Event().wait(0.05)
    failed = [r for r in traffic.results if r[0] != 200]
    assert failed == [], failed[:5]
    versions = [v for _, v in traffic.results]
    assert versions[0] == 1 and set(versions) == {1, 2} and set(versions[done:]) == {2}
    code, out = _run("endpoint", "invoke", "web", "--data", "[[1, 2]]")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["predictions"] == [30.0]
