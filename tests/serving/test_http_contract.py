"""The HTTP contract over a real socket: limits, bad input, handler failures, timeouts, fuzzing."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import Constant, scripted_model_dir


class Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


FAILING_INFERENCE_PY = '''
import time


def predict_fn(data, model):
    time.sleep(0.1)   # requests queue behind a running batch, so the next batch holds several
    if bool((data < 0).any()):
        raise RuntimeError("negative input breaks this handler")
    return model(data)
'''

SLOW_INFERENCE_PY = '''
import time


def predict_fn(data, model):
    time.sleep(float(data[0, 0]))
    return model(data)
'''


def test_ping_is_503_until_a_model_is_loaded(serve_in_process) -> None:
    server = serve_in_process(None)
    assert httpx.get(f"{server.url}/ping").status_code == 503
    r = httpx.post(f"{server.url}/invocations", json=[[1.0]])
    assert r.status_code == 503 and "no model loaded" in r.json()["error"]


def test_payload_over_the_limit_gets_413(serve_in_process, tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Linear()), max_payload=1000)
    r = httpx.post(f"{server.url}/invocations", json=[[1.0] * 4] * 100)
    assert r.status_code == 413 and "larger than 1000 bytes" in r.json()["error"]

    def chunks():   # no content-length: the limit holds for a streamed body too
        for _ in range(20):
            yield b"[" * 100

    assert httpx.post(f"{server.url}/invocations", content=chunks()).status_code == 413
    assert httpx.get(f"{server.url}/ping").status_code == 200


def test_malformed_and_unsupported_payloads_get_4xx_with_a_message(serve_in_process, tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Linear()))
    cases = [
        (b"[[1, 2", "application/json", None, 400, "not valid JSON"),
        (b"[[1, 2], [3]]", "application/json", None, 400, "rectangular"),
        (b"[[1, 2]]", "application/json", None, 400, "rejects input of shape (1, 2)"),
        (b"1,x\n", "text/csv", None, 400, "not numeric CSV"),
        (b"\x93NUMPY garbage", "application/x-npy", None, 400, "not a .npy array"),
        (b"<a/>", "application/xml", None, 415, "content-type: 'application/xml' is not supported"),
        (b"[[1, 2, 3, 4]]", "application/json", "image/png", 406, "accept: none of 'image/png'"),
    ]
    for body, content_type, accept, status, message in cases:
        headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
        r = httpx.post(f"{server.url}/invocations", content=body, headers=headers)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["error"] and r.json()["request_id"] == r.headers["x-amzn-requestid"]


def test_accept_header_picks_the_response_encoding(serve_in_process, tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Constant(0.5)))
    body = {"content": b"[[1, 2], [3, 4]]", "url": f"{server.url}/invocations"}
    as_json = httpx.post(**body, headers={"content-type": "application/json"})
    as_csv = httpx.post(**body, headers={"content-type": "application/json", "accept": "text/csv"})
    as_npy = httpx.post(**body, headers={"content-type": "application/json", "accept": "application/x-npy"})
    assert as_json.json() == [[0.5], [0.5]]
    assert as_csv.text == "0.5\n0.5" and as_csv.headers["content-type"] == "text/csv"
    assert np.load(io.BytesIO(as_npy.content)).tolist() == [[0.5], [0.5]]


JSONLINES_INFERENCE_PY = '''
import json


def output_fn(prediction, accept):
    if accept != "application/jsonlines":
        raise ValueError(f"cannot answer {accept}")
    return "\\n".join(json.dumps(row) for row in prediction.tolist()), accept
'''


def test_custom_output_fn_gets_the_accept_type_the_client_asked_for(serve_in_process, tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Constant(0.5), JSONLINES_INFERENCE_PY))
    r = httpx.post(f"{server.url}/invocations", json=[[1.0], [2.0]],
                   headers={"accept": "application/jsonlines, */*"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/jsonlines"
    assert r.text == "[0.5]\n[0.5]"


def test_handler_exception_gets_500_with_request_id_and_server_keeps_running(serve_in_process,
                                                                           tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Linear(), FAILING_INFERENCE_PY))
    r = httpx.post(f"{server.url}/invocations", json=[[-1.0] * 4])
    assert r.status_code == 500
    assert "negative input breaks this handler" in r.json()["error"]
    assert r.json()["request_id"] == r.headers["x-amzn-requestid"] != ""
    assert httpx.post(f"{server.url}/invocations", json=[[1.0] * 4]).status_code == 200


def test_one_failing_request_does_not_fail_its_batch_neighbours(serve_in_process, tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Linear(), FAILING_INFERENCE_PY), max_batch=64)
    statuses: dict[int, int] = {}

    def call(i: int) -> None:
        statuses[i] = httpx.post(f"{server.url}/invocations", json=[[-1.0 if i == 3 else 1.0] * 4]).status_code

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == {i: 500 if i == 3 else 200 for i in range(8)}
    assert server.metrics.sample("gpufleet_batch_size_count") < 8       # some requests did share a batch


def test_request_over_the_timeout_gets_504_and_others_still_answer(serve_in_process, tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Linear(), SLOW_INFERENCE_PY), timeout_s=0.3)
    slow = httpx.post(f"{server.url}/invocations", json=[[1.0, 0, 0, 0]], timeout=10)
    assert slow.status_code == 504 and "no answer within 0.3 s" in slow.json()["error"]
    assert httpx.get(f"{server.url}/ping").status_code == 200   # the loop is not stuck in the handler
    while "gpufleet_batch_size_count 1.0" not in httpx.get(f"{server.url}/metrics").text:
        time.sleep(0.05)   # the worker is still in the slow handler; requests queue behind it
    assert httpx.post(f"{server.url}/invocations", json=[[0.0] * 4], timeout=10).status_code == 200


def test_metrics_expose_requests_latency_batches_model_and_gpu_state(serve_in_process, tmp_path: Path) -> None:
    server = serve_in_process(scripted_model_dir(tmp_path, Linear()))
    for _ in range(3):
        httpx.post(f"{server.url}/invocations", json=[[1.0] * 4])
    httpx.post(f"{server.url}/invocations", content=b"{", headers={"content-type": "application/json"})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'gpufleet_requests_total{code="200"} 3.0' in text
    assert 'gpufleet_requests_total{code="400"} 1.0' in text
    assert 'gpufleet_request_latency_seconds_bucket{le="+Inf"} 4.0' in text
    assert 'gpufleet_batch_size_count 3.0' in text
    assert 'gpufleet_model_info{model="m",version="1"} 1.0' in text
    assert 'gpufleet_gpu_available 0.0' in text


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=20)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: repr(v).encode())),
       content_type=st.sampled_from(["application/json", "text/csv", "application/x-npy", "text/plain", "",
                                     "application/json; charset=utf-8"]),
       accept=st.sampled_from(["", "*/*", "application/json", "text/csv", "application/x-npy", "x/y"]))
def test_fuzzed_payloads_get_4xx_never_a_crash(fuzz_server: httpx.Client, body: bytes, content_type: str,
                                              accept: str) -> None:
    headers = {k: v for k, v in (("content-type", content_type), ("accept", accept)) if v}
    r = fuzz_server.post("/invocations", content=body, headers=headers)
    assert r.status_code in (200, 400, 406, 413, 415), (body, headers, r.text)
    if r.status_code != 200:
        assert r.json()["error"]
