"""The AWS APIs answering throttling errors and 5xx for 30 s while a serving agent is under load.

A fault-injecting proxy (tests/support/faultproxy.py) stands between the agent and the emulator and, for
30 s, answers every call with AWS's throttling error or a 503 in the call's protocol (DynamoDB's JSON,
CloudWatch's CBOR, S3's XML): botocore retries them as on AWS, then gives up. A client sends a steady load
meanwhile.

What must hold: every invocation is answered 200 during the fault (serving never waits on AWS); after
it, the watcher recovers (a version approved after the fault is served) and so do the metrics (new
datapoints reach CloudWatch, and every invocation is counted there: a window CloudWatch did not take goes
out with the next one).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.serving.conftest import Constant, Team, pack, scripted_model_dir
from tests.support.faultproxy import FaultProxy
from tests.training.conftest import wait_for

FAULT_S = 30


class SteadyLoad:
    """Two clients sending requests back to back, counting answers by status and serving version."""

    def __init__(self, url: str, clients: int = 2) -> None:
        self.url, self.stop = url, threading.Event()
        self.answers: Counter[tuple[int, str]] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(clients)]

    def __enter__(self) -> SteadyLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _send(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/invocations", json=[[0.0, 1.0, 2.0, 3.0]])
                    answer = (r.status_code, r.headers.get("x-gpufleet-model", ""))
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    self.answers[answer] += 1
                time.sleep(0.01)

    def snapshot(self) -> Counter[tuple[int, str]]:
        with self.lock:
            return Counter(self.answers)


@pytest.mark.slow
def test_30s_of_throttling_and_503s_keep_serving_and_the_watcher_and_metrics_recover(
        serving_team: Team, fault_proxy: FaultProxy, start_serving_agent, tmp_path) -> None:
    team = serving_team
    for version in (1, 2):
        model_dir = scripted_model_dir(tmp_path / f"v{version}", Constant(float(version)))
        team.publish_model("steady", version, pack(model_dir))
    team.point_endpoint("web", "blue", "steady", 1)
    agent = start_serving_agent("web")
    agent.wait_ready()
    cloudwatch = team.client("cloudwatch")
    instance = agent.url.rsplit(":", 1)[1].join(["i-", ""])

    with SteadyLoad(agent.url) as load:
        wait_for(lambda: _invocations(cloudwatch, team, instance, since=None), 60, "metrics before the fault")
        fault_proxy.throttle(seconds=FAULT_S)
        before = load.snapshot()
        time.sleep(FAULT_S)        # the fault lasts this long; the proxy ends it itself
        during = load.snapshot() - before
        healed_at = datetime.now(UTC)

        assert during[(200, "steady:1")] > 0, "the load went on during the fault"
        assert set(during) == {(200, "steady:1")}, f"every invocation answered 200 during the fault: {during}"
        faulted = {c.service for c in fault_proxy.calls if c.outcome in ("throttled", "unavailable")}
        assert {"dynamodb", "monitoring"} <= faulted, "the watcher's and the metrics' calls met the fault"
        events = {e["event"] for e in agent.events()}
        assert {"watch_failed", "put_metric_data_failed"} <= events, "the fault outlasted botocore's retries"

        team.point_endpoint("web", "blue", "steady", 2)   # approved at publish; the watcher must pick it up
        wait_for(lambda: load.snapshot()[(200, "steady:2")] > 0, 60, "the version approved after the fault")
        wait_for(lambda: _invocations(cloudwatch, team, instance, since=healed_at), 60,
                 "metric datapoints after the fault")
    agent.process.send_signal(signal.SIGTERM)      # its last window is published on the way out
    assert agent.process.wait(30) == 0

    answers = load.snapshot()
    assert load.failures == [], load.failures[:5]
    assert {status for status, _ in answers} == {200}, answers
    counted = _invocations(cloudwatch, team, instance, since=None)
    assert counted == sum(answers.values()), "CloudWatch counted every invocation, none lost to the fault"


def _invocations(cloudwatch, team: Team, instance: str, since: datetime | None) -> int:
    """The Invocations this instance published to CloudWatch (since ``since``), by summing datapoints."""
    dims = [{"Name": "Team", "Value": team.runtime.team}, {"Name": "Endpoint", "Value": "web"},
            {"Name": "Variant", "Value": "blue"}, {"Name": "InstanceId", "Value": instance}]
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace="gpufleet", MetricName="Invocations", Dimensions=dims, Statistics=["Sum", "SampleCount"],
        StartTime=since or now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=60)["Datapoints"]
    return int(sum(p["Sum"] for p in points)) if points else 0
