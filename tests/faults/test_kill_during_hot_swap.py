"""A serving agent ``kill -9``ed in the middle of a hot swap, then restarted on the same host.

The swap is caught at a real slow point: the new version's artifact (3 MiB) is being downloaded, and the
fault proxy holds the download after 1.5 MiB, so the agent has half a tarball on disk when it is killed.

What must hold: the restarted agent serves the approved version (the artifact whose sha256 the approval
pinned, byte for byte), and nothing half-written or stale is left in its model directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import httpx

from tests.serving.conftest import Agent, Constant, Team, pack, scripted_model_dir
from tests.support.faultproxy import Call, FaultProxy
from tests.training.conftest import wait_for

ARTIFACT_PADDING = 3 << 20      # random bytes, so the tarball stays this big after gzip
HELD_AFTER = 3 << 19            # botocore reads 1 MiB chunks: one is on disk when the download stalls


def _invoke(agent: Agent) -> tuple[str, float]:
    r = httpx.post(f"{agent.url}/invocations", json=[[0.0, 1.0, 2.0, 3.0]], timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["x-gpufleet-model"], r.json()[0][0]


def _is_v2_download(call: Call) -> bool:
    return call.service == "s3" and call.method == "GET" and \
        call.path.split("?")[0].endswith("/models/swap/2/model.tar.gz")


def test_an_agent_killed_mid_swap_restarts_serving_the_approved_version_and_leaves_nothing_half_written(
        serving_team: Team, fault_proxy: FaultProxy, start_serving_agent, tmp_path: Path) -> None:
    team = serving_team
    tarballs = {}
    for version in (1, 2):
        model_dir = scripted_model_dir(tmp_path / f"v{version}", Constant(float(version)))
        (model_dir / "weights.bin").write_bytes(os.urandom(ARTIFACT_PADDING))
        tarballs[version] = pack(model_dir)
        team.publish_model("swap", version, tarballs[version])
    team.point_endpoint("web", "blue", "swap", 1)
    agent = start_serving_agent("web")
    agent.wait_ready()
    assert _invoke(agent) == ("swap:1", 1.0)
    port = int(agent.url.rsplit(":", 1)[1])
    models = tmp_path / f"opt-ml-{port}" / "models" / "swap"

    stalled = fault_proxy.stall(_is_v2_download, after_bytes=HELD_AFTER)
    team.point_endpoint("web", "blue", "swap", 2)
    assert stalled.wait(60), "the agent started downloading version 2"
    wait_for(lambda: [p for p in models.glob(".fetch-*/model.tar.gz") if p.stat().st_size >= 1 << 20], 30,
             "half of version 2's tarball on disk")
    assert _invoke(agent) == ("swap:1", 1.0), "version 1 serves while version 2 downloads"
    agent.process.kill()
    agent.process.wait(10)
    fault_proxy.heal()
    left = sorted(p.name for p in models.iterdir())
    assert "1" in left and any(name.startswith(".fetch-") for name in left), f"the kill left its state: {left}"

    restarted = start_serving_agent("web", port=port)
    restarted.wait_ready()
    assert _invoke(restarted) == ("swap:2", 2.0)
    assert sorted(p.name for p in models.iterdir()) == ["2"], "no half-written download, no stale version"
    _assert_unpacked_from(tarballs[2], models / "2")
    swapped = [e for e in restarted.events() if e["event"] == "model_swapped"]
    assert [(e["model"], e["version"]) for e in swapped] == [("swap", 2)]


def _assert_unpacked_from(tarball: bytes, directory: Path) -> None:
    """Every file of the approved artifact is in ``directory`` with its bytes, and nothing else is."""
    expected = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                expected[os.path.normpath(member.name)] = hashlib.sha256(data).hexdigest()
    found = {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert found == expected
