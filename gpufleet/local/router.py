"""The local stand-in for an endpoint's ALB data plane.

It forwards requests on the listener rule's paths (``/ping``, ``/invocations``; anything else gets the
listener's fixed 404) to the blue or green variant by the rule's current weights (read from the
emulated ELBv2, where rollouts set them), only to targets whose ``/ping`` health check passes, and
publishes the ALB's own CloudWatch metrics (``AWS/ApplicationELB``) so that the endpoint's alarms
see what they would see on AWS.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import itertools
import json
import random
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.local.alarms import LOCAL_PUBLISH_EVERY_S
from gpufleet.local.instances import LocalInstance, read_instances
from gpufleet.rollout.fleet import forwarded_paths, read_weights
from gpufleet.schema import VARIANTS, Variant
from gpufleet.schema.runtime import EndpointRuntime, TeamRuntime

HEALTHY_THRESHOLD = 2      # consecutive passing checks before a target takes traffic (ALB default: 5)
UNHEALTHY_THRESHOLD = 2    # consecutive failures before it stops
CHECK_INTERVAL_S = 1.0     # ALB minimum: 5 s; shorter here so local rollouts do not wait
METRIC_FLUSH_S = LOCAL_PUBLISH_EVERY_S   # the ALB publishes each minute; locally each scaled minute, twice
TARGET_TIMEOUT_S = 30.0
STATUS_PATH = "/_gpufleet/targets"
# The headers passed to a target and back: those the SageMaker contract uses (an ALB passes all of them).
REQUEST_HEADERS = ("content-type", "accept", "x-request-id", "x-amzn-sagemaker-custom-attributes")
RESPONSE_HEADERS = ("content-type", "x-request-id", "x-amzn-sagemaker-custom-attributes")


@dataclass
class TargetState:
    instance: LocalInstance
    passes: int = 0
    fails: int = 0
    healthy: bool = False


@dataclass
class Counters:
    requests: int = 0
    target_2xx: int = 0
    target_4xx: int = 0
    target_5xx: int = 0
    elb_5xx: int = 0
    latencies: list[float] = field(default_factory=list)


def alb_dimension(arn: str) -> str:
    """``app/<name>/<id>`` or ``targetgroup/<name>/<id>``: how CloudWatch names them."""
    return arn.split(":", 5)[-1].split("/", 1)[-1] if ":loadbalancer/" in arn else arn.split(":", 5)[-1]


class EndpointRouter:
    def __init__(self, root: Path, access: AwsClients, runtime: TeamRuntime, endpoint: str, port: int) -> None:
        self.root, self.access, self.runtime, self.endpoint = root, access, runtime, endpoint
        self.ep: EndpointRuntime = runtime.endpoints[endpoint]
        self.port = port
        self.weights: dict[Variant, int] = {"blue": 100, "green": 0}
        self.targets: dict[str, TargetState] = {}
        self.rr = itertools.count()
        self.counters: dict[Variant, Counters] = defaultdict(Counters)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.lb_dimension = ""
        self.paths: list[str] = []   # the forward rule's path patterns; anything else gets the listener's 404

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = self.access.client("elbv2").describe_listeners(ListenerArns=[self.ep.listener_arn])
        self.lb_dimension = alb_dimension(listener["Listeners"][0]["LoadBalancerArn"])
        self.paths = forwarded_paths(self.access.client("elbv2"), self.ep)
        for target, name in ((self.server.serve_forever, "serve"), (self._control_loop, "control"),
                             (self._metrics_loop, "metrics")):
            threading.Thread(target=target, name=f"router-{self.endpoint}-{name}", daemon=True).start()

    def stop(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()
        with contextlib.suppress(Exception):
            self._flush_metrics()

    # --- control plane: weights and health checks ----------------------------------------------------
    def _control_loop(self) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(Exception):  # the emulator may be going away; try again next tick
                self.weights = read_weights(self.access.client("elbv2"), self.ep)
            self._check_targets()
            self.stop_event.wait(CHECK_INTERVAL_S)

    def _check_targets(self) -> None:
        # A draining (scaled-in) instance is deregistered at once, as the ALB does: it takes no new request
        # and does not count as a healthy target, even while it still answers /ping.
        current = {i.instance_id: i for i in read_instances(self.root) if i.role == "serving" and not i.draining
                   and i.team == self.runtime.team and i.endpoint == self.endpoint}
        with self.lock:
            for gone in set(self.targets) - set(current):
                del self.targets[gone]
            for iid, inst in current.items():
                self.targets.setdefault(iid, TargetState(inst))
        for state in list(self.targets.values()):
            ok = _ping(state.instance.serving_port)
            state.passes, state.fails = (state.passes + 1, 0) if ok else (0, state.fails + 1)
            if state.passes >= HEALTHY_THRESHOLD:
                state.healthy = True
            elif state.fails >= UNHEALTHY_THRESHOLD:
                state.healthy = False

    def health(self) -> dict[str, Any]:
        # Scale-in deregisters at once (as the ALB does), not at the next health-check tick: a rollout that
        # reads health right after a scale-in must not count the draining instance.
        draining = {i.instance_id for i in read_instances(self.root) if i.draining}
        with self.lock:
            targets = {v: [{"instance_id": s.instance.instance_id, "port": s.instance.serving_port,
                            "healthy": s.healthy} for s in self.targets.values()
                           if s.instance.variant == v and s.instance.instance_id not in draining]
                       for v in VARIANTS}
        return {"weights": self.weights, "targets": targets}

    def _pick(self) -> tuple[Variant, LocalInstance | None]:
        weights = self.weights
        variant: Variant = random.choices(VARIANTS, weights=[weights[v] for v in VARIANTS])[0] \
            if sum(weights.values()) else "blue"
        with self.lock:
            members = [s for s in self.targets.values() if s.instance.variant == variant]
        healthy = [s for s in members if s.healthy] or members  # ALB fails open when none is healthy
        if not healthy:
            return variant, None
        return variant, healthy[next(self.rr) % len(healthy)].instance

    # --- data plane ---------------------------------------------------------------------------------
    def forwards(self, path: str) -> bool:
        """Whether the listener rule matches ``path`` (ALB path patterns: case-sensitive, * and ? wildcards)."""
        return any(fnmatch.fnmatchcase(urllib.parse.urlsplit(path).path, p) for p in self.paths)

    def forward(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, dict[str, str], bytes]:
        variant, inst = self._pick()
        started = time.perf_counter()
        if inst is None:
            self._count(variant, None, 0.0)
            return 503, {"Content-Type": "text/plain"}, b"no registered targets\n"
        conn = http.client.HTTPConnection("127.0.0.1", inst.serving_port, timeout=TARGET_TIMEOUT_S)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status, out_headers = resp.status, {k: v for k, v in resp.getheaders()
                                                if k.lower() in RESPONSE_HEADERS}
        except (OSError, http.client.HTTPException):
            self._count(variant, None, time.perf_counter() - started)
            return 502, {"Content-Type": "text/plain"}, b"bad gateway\n"
        finally:
            conn.close()
        self._count(variant, status, time.perf_counter() - started)
        out_headers["X-Gpufleet-Variant"] = variant
        return status, out_headers, data

    def _count(self, variant: Variant, status: int | None, seconds: float) -> None:
        with self.lock:
            c = self.counters[variant]
            c.requests += 1
            if status is None:
                c.elb_5xx += 1
                return
            c.latencies.append(seconds)
            if 200 <= status < 300:
                c.target_2xx += 1
            elif 400 <= status < 500:
                c.target_4xx += 1
            elif status >= 500:
                c.target_5xx += 1

    def _metrics_loop(self) -> None:
        while not self.stop_event.wait(METRIC_FLUSH_S):
            with contextlib.suppress(Exception):
                self._flush_metrics()

    def _flush_metrics(self) -> None:
        with self.lock:
            counters, self.counters = self.counters, defaultdict(Counters)
        data = []
        for variant, c in counters.items():
            if not c.requests:
                continue
            # One dimension set, {LoadBalancer, TargetGroup}: the emulator matches a query's dimensions
            # as a subset, so alarms on LoadBalancer alone still see the sum over both target groups.
            dims = [{"Name": "LoadBalancer", "Value": self.lb_dimension},
                    {"Name": "TargetGroup", "Value": alb_dimension(getattr(self.ep.target_groups, variant))}]
            for name, value in (("RequestCount", c.requests), ("HTTPCode_Target_2XX_Count", c.target_2xx),
                                ("HTTPCode_Target_4XX_Count", c.target_4xx),
                                ("HTTPCode_Target_5XX_Count", c.target_5xx), ("HTTPCode_ELB_5XX_Count", c.elb_5xx)):
                data.append({"MetricName": name, "Dimensions": dims, "Value": float(value), "Unit": "Count"})
            if c.latencies:
                data.append({"MetricName": "TargetResponseTime", "Dimensions": dims, "Unit": "Seconds",
                             "Values": c.latencies[:150]})
        for i in range(0, len(data), 20):
            self.access.client("cloudwatch").put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data[i:i + 20])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                if self.path == STATUS_PATH:
                    self._send(200, {"Content-Type": "application/json"}, json.dumps(router.health()).encode())
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not router.forwards(self.path):
                    self._send(404, {"Content-Type": "text/plain"}, b"not found")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in REQUEST_HEADERS}
                self._send(*router.forward(self.command, self.path, headers, body))

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _relay

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _ping(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/ping")
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
