"""The serving agent as a real process against a real moto server, over real HTTP."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from gpufleet.agent.training.output import publish_model
from gpufleet.aws import AwsClients
from gpufleet.registry.models import approve_model_version
from tests.serving.conftest import Agent, Constant, Digits, Team, pack, scripted_model_dir
from tests.support.audit import audit_team_calls, problems


def _predict_classes(agent: Agent, x: np.ndarray, content_type: str) -> np.ndarray:
    if content_type == "application/json":
        body = json.dumps(x.tolist()).encode()
    elif content_type == "text/csv":
        body = "\n".join(",".join(str(v) for v in row) for row in x).encode()
    else:
        buffer = io.BytesIO()
        np.save(buffer, x)
        body = buffer.getvalue()
    r = httpx.post(f"{agent.url}/invocations", content=body, timeout=30,
                   headers={"content-type": content_type, "accept": "application/x-npy"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(r.content)).argmax(axis=1)


def test_model_from_the_training_agent_serves_predicts_and_reports(team: Team, digits: Digits,
                                                                   start_agent, tmp_path: Path) -> None:
    clients = AwsClients.create(team.runtime.region, team.emu.endpoint)
    published = publish_model(clients, team.runtime, digits.model_dir, "digits", {"job_id": "job-digits"})
    assert published == "digits:1"
    approve_model_version(clients, team.runtime, "digits", 1)
    team.point_endpoint("web", "blue", "digits", 1)
    agent = start_agent("web", capture_percent=100)
    agent.wait_ready()

    for content_type in ("application/json", "text/csv", "application/x-npy"):
        predicted = _predict_classes(agent, digits.x_test, content_type)
        assert (predicted == digits.y_test).mean() > 0.9, content_type
    one = httpx.post(f"{agent.url}/invocations", json=digits.x_test[:1].tolist())
    assert one.headers["x-gpufleet-model"] == "digits:1"
    assert np.argmax(one.json()[0]) == digits.y_test[0]

    metrics = httpx.get(f"{agent.url}/metrics").text
    assert 'gpufleet_requests_total{code="200"} 4.0' in metrics
    assert 'gpufleet_model_info{model="digits",version="1"} 1.0' in metrics
    assert "gpufleet_gpu_available 0.0" in metrics

    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(20) == 0
    cloudwatch = team.client("cloudwatch")
    names = {m["MetricName"] for m in cloudwatch.list_metrics(
        Namespace="gpufleet", Dimensions=[{"Name": "InstanceId", "Value": agent.url.rsplit(":", 1)[1].join(
            ["i-", ""])}])["Metrics"]}
    assert {"Invocations", "ModelLatency"} <= names
    _assert_captured(team, request_count=4)

    # The agent's calls, judged against the serving role and network the team stack gives it on AWS
    # (unused grants are judged by the demo e2e, which exercises every role end to end).
    report = audit_team_calls(tmp_path / "calls", team.runtime, tmp_path / "audit", endpoints=("web",))
    assert problems(report) == []
    (serving,) = report.roles
    assert {"s3:GetObject", "s3:PutObject", "kms:Decrypt", "kms:GenerateDataKey", "dynamodb:GetItem",
            "cloudwatch:PutMetricData"} <= serving.actions


def _assert_captured(team: Team, request_count: int) -> None:
    s3 = team.client("s3")
    bucket = team.runtime.buckets.capture
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(k.startswith(f"web/blue/{time.strftime('%Y/%m/%d', time.gmtime())}/") for k in keys)
    records = [json.loads(line) for k in keys
               for line in s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()]
    assert len(records) == request_count
    kinds = Counter(r["captureData"]["endpointInput"]["observedContentType"] for r in records)
    assert kinds == {"application/json": 2, "text/csv": 1, "application/x-npy": 1}
    assert all(r["captureData"]["endpointOutput"]["data"] for r in records)


SAGEMAKER_INFERENCE_PY = '''
import json
import os

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                       torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x / 16.0)


def model_fn(model_dir):
    model = Net()
    with open(os.path.join(model_dir, "model.pth"), "rb") as f:
        model.load_state_dict(torch.load(f))
    return model.eval()


def input_fn(request_body, request_content_type):
    if request_content_type == "application/json":
        return torch.tensor(json.loads(request_body)["inputs"], dtype=torch.float32)
    raise ValueError(f"Unsupported content type: {request_content_type}")


def predict_fn(input_data, model):
    with torch.no_grad():
        return model(input_data)


def output_fn(prediction, content_type):
    return json.dumps({"predictions": prediction.argmax(dim=1).tolist()})
'''


def test_sagemaker_inference_py_serves_unchanged(team: Team, digits: Digits, start_agent, tmp_path: Path) -> None:
    import torch

    model_dir = tmp_path / "sm"
    (model_dir / "code").mkdir(parents=True)
    torch.save(torch.export.load(str(digits.model_dir / "model.pt2")).state_dict, model_dir / "model.pth")
    (model_dir / "code" / "inference.py").write_text(SAGEMAKER_INFERENCE_PY)
    team.publish_model("sm-digits", 3, pack(model_dir))
    team.point_endpoint("sm", "blue", "sm-digits", 3)
    agent = start_agent("sm")
    agent.wait_ready()

    r = httpx.post(f"{agent.url}/invocations", json={"inputs": digits.x_test.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    assert (np.array(r.json()["predictions"]) == digits.y_test).mean() > 0.9
    bad = httpx.post(f"{agent.url}/invocations", content=b"1,2", headers={"content-type": "text/csv"})
    assert bad.status_code == 400 and "Unsupported content type" in bad.json()["error"]


def test_hot_swap_under_load_fails_no_request(team: Team, start_agent, tmp_path: Path) -> None:
    for version in (1, 2):
        team.publish_model("swap", version, pack(scripted_model_dir(tmp_path / f"v{version}", Constant(version))))
    team.point_endpoint("swap", "blue", "swap", 1)
    agent = start_agent("swap")
    agent.wait_ready()
    stop, failures, seen = threading.Event(), [], [[] for _ in range(4)]

    def load(versions: list[float]) -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    r = http.post(f"{agent.url}/invocations", json=[[0.0, 1.0]])
                    if r.status_code != 200:
                        failures.append(r.status_code)
                    else:
                        versions.append(r.json()[0][0])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    def ping() -> None:
        while not stop.is_set():
            if httpx.get(f"{agent.url}/ping", timeout=30).status_code != 200:
                failures.append("ping")
            time.sleep(0.02)

    threads = [threading.Thread(target=load, args=(s,)) for s in seen] + [threading.Thread(target=ping)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    team.point_endpoint("swap", "blue", "swap", 2)
    deadline = time.monotonic() + 30
    while not all(s and s[-1] == 2.0 for s in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)

    assert failures == []
    for versions in seen:
        assert versions[0] == 1.0 and versions[-1] == 2.0
        assert versions == sorted(versions), "a request went back to the old model after the swap"
    assert any(e["event"] == "model_swapped" and e["previous"] == "swap:1" for e in agent.events())


def test_tampered_artifact_is_refused_and_current_model_keeps_serving(team: Team, start_agent,
                                                                     tmp_path: Path) -> None:
    team.publish_model("tamper", 1, pack(scripted_model_dir(tmp_path / "v1", Constant(1.0))))
    uri = team.publish_model("tamper", 2, pack(scripted_model_dir(tmp_path / "v2", Constant(2.0))))
    evil = pack(scripted_model_dir(tmp_path / "evil", Constant(666.0)))
    bucket, key = uri[5:].split("/", 1)
    team.client("s3").put_object(Bucket=bucket, Key=key, Body=evil)   # replaced after registration
    team.point_endpoint("tamper", "blue", "tamper", 1)
    agent = start_agent("tamper")
    agent.wait_ready()
    team.point_endpoint("tamper", "blue", "tamper", 2)

    deadline = time.monotonic() + 20
    while "gpufleet_model_load_failures_total 1.0" not in httpx.get(f"{agent.url}/metrics").text:
        assert time.monotonic() < deadline, agent.log.read_text()[-2000:]
        time.sleep(0.1)
    r = httpx.post(f"{agent.url}/invocations", json=[[0.0]])
    assert r.json() == [[1.0]] and r.headers["x-gpufleet-model"] == "tamper:1"
    refused = [e for e in agent.events() if e["event"] == "model_refused"]
    assert refused and "does not match the registry's" in refused[0]["reason"]


SLOW_INFERENCE_PY = '''
import time


def predict_fn(data, model):
    time.sleep(1.5)
    return model(data)
'''


def test_sigterm_drains_in_flight_requests_then_exits(team: Team, start_agent, tmp_path: Path) -> None:
    model_dir = scripted_model_dir(tmp_path / "slow", Constant(7.0), SLOW_INFERENCE_PY)
    team.publish_model("slow", 1, pack(model_dir))
    team.point_endpoint("slow", "blue", "slow", 1)
    agent = start_agent("slow", drain_timeout_s=20)
    agent.wait_ready()
    results: list[int] = []

    def call() -> None:
        results.append(httpx.post(f"{agent.url}/invocations", json=[[1.0]], timeout=30).status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while "gpufleet_requests_in_flight 3.0" not in httpx.get(f"{agent.url}/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    agent.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)

    assert results == [200, 200, 200]
    assert agent.process.wait(20) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{agent.url}/ping", timeout=2)
    events = {e["event"]: e for e in agent.events()}
    assert events["draining"]["in_flight"] == 3      # SIGTERM landed while they ran
    assert events["serving_stopped"]["served"] == 3


def test_port_in_use_exits_1_with_a_one_line_error(team: Team, start_agent) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        agent = start_agent("none", port=busy.getsockname()[1])
        assert agent.process.wait(60) == 1
    assert "error: serving: could not listen on port" in agent.log.read_text()
