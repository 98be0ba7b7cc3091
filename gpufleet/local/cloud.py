"""The local cloud: what AWS itself would do around the emulator, in one long-running process.

- EC2/Auto Scaling: one agent process per unit of each ASG's desired capacity (``instances``);
- the ALB data plane: a router per endpoint that forwards by the listener's weights (``router``);
- CloudWatch alarms and Auto Scaling policies, which the emulator never evaluates (``alarms``);
- the SQS queue-depth metrics that SQS publishes on AWS and the emulator does not.

``gpufleet local up`` starts it in its own session so it outlives the CLI; ``local down`` stops it, and
it stops its agents gracefully on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.callrecord import recording_env
from gpufleet.errors import RuntimeFailure
from gpufleet.local import emulator
from gpufleet.local.alarms import LOCAL_PUBLISH_EVERY_S, LOCAL_TIME_SCALE, AlarmEvaluator
from gpufleet.local.instances import AsgSpec, LocalFleet, pid_alive, read_instances
from gpufleet.local.router import STATUS_PATH, EndpointRouter
from gpufleet.ports import free_port
from gpufleet.rollout.fleet import TargetHealth
from gpufleet.schema import VARIANTS, Variant
from gpufleet.schema.runtime import TeamRuntime, load_runtime
from gpufleet.workspace import calls_dir, teams_dir

log = logging.getLogger("gpufleet.local.cloud")
TICK_S = 1.0
ALARM_EVERY_S = 1.0      # CloudWatch evaluates each minute; locally each scaled minute (5 s) is seen several times
QUEUE_METRICS_EVERY_S = LOCAL_PUBLISH_EVERY_S
EMULATOR_GONE_S = 15.0   # without its emulator the local cloud has nothing to follow (e.g. a killed test run)


def record_path(root: Path) -> Path:
    return root / "cloud.json"


def routers_path(root: Path) -> Path:
    return root / "routers.json"


def _desired(autoscaling: Any, names: list[str]) -> dict[str, int]:
    """Desired capacity of each named Auto Scaling group that exists."""
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=names)["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: int(g["DesiredCapacity"]) for g in groups}


@dataclass(frozen=True)
class CloudRecord:
    pid: int
    started_at: float


def find(root: Path) -> CloudRecord | None:
    try:
        rec = CloudRecord(**json.loads(record_path(root).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return rec if pid_alive(rec.pid) else None


def start(root: Path, emu: emulator.Emulator, timeout_s: float = 20.0) -> CloudRecord:
    """Start the local cloud process for the emulator ``emu`` unless it already runs."""
    existing = find(root)
    if existing:
        return existing
    root.mkdir(parents=True, exist_ok=True)
    with (root / "cloud.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gpufleet.local.cloud", "--root", str(root),
                                 "--endpoint", emu.endpoint], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **emulator.LOCAL_CREDENTIALS,
                                     **recording_env(calls_dir(root), "local-cloud")})
    rec: CloudRecord | None = emulator.poll_until(lambda: find(root), proc, timeout_s)
    if rec is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise RuntimeFailure("local up", "the local cloud process did not start", f"read {root / 'cloud.log'}")
    return rec


def stop(root: Path, timeout_s: float = 90.0) -> bool:
    """Stop the local cloud (it stops its agents first); kill any agent left over. True if it ran."""
    rec = find(root)
    if rec:
        emulator.stop_process(rec.pid, timeout_s)
    for inst in read_instances(root):  # only if the cloud process died without stopping them
        with contextlib.suppress(ProcessLookupError):
            os.kill(inst.pid, signal.SIGKILL)
    record_path(root).unlink(missing_ok=True)
    return rec is not None


def router_key(team: str, endpoint: str, rebuilt_region: str | None = None) -> str:
    """``<team>/<endpoint>``; a DR rebuild's endpoint is ``<team>@<region>/<endpoint>``."""
    return f"{team}@{rebuilt_region}/{endpoint}" if rebuilt_region else f"{team}/{endpoint}"


def router_urls(root: Path) -> dict[str, str]:
    """``{router_key: url}`` of the running routers."""
    try:
        return dict(json.loads(routers_path(root).read_text()))
    except (OSError, ValueError):
        return {}


class LocalCloud:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root, self.endpoint = root, endpoint
        self.fleet = LocalFleet(root, endpoint)
        self.routers: dict[str, EndpointRouter] = {}
        self.access: dict[str, AwsClients] = {}
        self.evaluators: dict[str, AlarmEvaluator] = {}
        self.stop_event = threading.Event()
        self.rebuilt: set[tuple[str, str]] = set()  # (team, region) of DR rebuilds

    def _aws(self, region: str) -> AwsClients:
        if region not in self.access:
            self.access[region] = AwsClients.create(region, self.endpoint)
        return self.access[region]

    def runtimes(self) -> list[TeamRuntime]:
        """Every team's runtime, the primary region's and any DR rebuild's (``teams/<region>/``)."""
        out = []
        paths = sorted(teams_dir(self.root).glob("*.json")) + sorted(teams_dir(self.root).glob("*/*.json"))
        for path in paths:
            with contextlib.suppress(Exception):
                rt = load_runtime(path)
                out.append(rt)
                if path.parent != teams_dir(self.root):
                    self.rebuilt.add((rt.team, rt.region))
        return out

    def router_key(self, rt: TeamRuntime, endpoint: str) -> str:
        return router_key(rt.team, endpoint, rt.region if (rt.team, rt.region) in self.rebuilt else None)

    def run(self) -> None:
        last_alarms = last_queues = last_seen = time.monotonic()
        while not self.stop_event.is_set():
            if self.emulator_alive():
                last_seen = time.monotonic()
            elif time.monotonic() - last_seen > EMULATOR_GONE_S:
                log.warning("the emulator at %s is gone: stopping the local cloud", self.endpoint)
                return
            runtimes = self.runtimes()
            for step, fn in (("routers", self.sync_routers), ("fleet", self.sync_fleet)):
                try:
                    fn(runtimes)
                except Exception as exc:  # the emulator may be restarting; keep the loop alive
                    log.warning("%s: %s", step, exc)
            now = time.monotonic()
            if now - last_alarms >= ALARM_EVERY_S:
                last_alarms = now
                self._each(runtimes, self.evaluate_alarms, "alarms")
            if now - last_queues >= QUEUE_METRICS_EVERY_S:
                last_queues = now
                self._each(runtimes, self.publish_queue_metrics, "queue metrics")
            self.stop_event.wait(TICK_S)

    def emulator_alive(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    def _each(self, runtimes: list[TeamRuntime], fn: object, step: str) -> None:
        for rt in runtimes:
            try:
                fn(rt)  # type: ignore[operator]
            except Exception as exc:
                log.warning("%s (%s): %s", step, rt.team, exc)

    def sync_fleet(self, runtimes: list[TeamRuntime]) -> None:
        for rt in runtimes:
            specs = [AsgSpec(rt.training.asg, rt, "training")]
            specs += [AsgSpec(getattr(ep.asgs, v), rt, "serving", name, v)
                      for name, ep in rt.endpoints.items() for v in VARIANTS]
            autoscaling = self._aws(rt.region).client("autoscaling")
            desired = _desired(autoscaling, [s.name for s in specs])
            for spec in specs:
                if spec.name not in desired:
                    continue
                if desired[spec.name] < len(self.fleet.running(spec.name)):
                    # A scale-in acts on the group's capacity now, not as read at the top of the pass: a rollout
                    # that raised it meanwhile (a rollback to the variant just scaled to zero) keeps its host,
                    # as an ASG's own scale-in would.
                    desired.update(_desired(autoscaling, [spec.name]))
                self.fleet.reconcile(spec, desired[spec.name])

    def sync_routers(self, runtimes: list[TeamRuntime]) -> None:
        wanted = {self.router_key(rt, name): (rt, name) for rt in runtimes for name in rt.endpoints}
        for key in set(self.routers) - set(wanted):
            self.routers.pop(key).stop()
        for key, (rt, name) in wanted.items():
            if key not in self.routers:
                router = EndpointRouter(self.root, self._aws(rt.region), rt, name, free_port())
                router.start()
                self.routers[key] = router
        urls = {key: r.url for key, r in self.routers.items()}
        if urls != router_urls(self.root):
            tmp = routers_path(self.root).with_suffix(".tmp")
            tmp.write_text(json.dumps(urls))
            tmp.replace(routers_path(self.root))

    def evaluate_alarms(self, rt: TeamRuntime) -> None:
        prefix = f"{rt.platform}-{rt.team}-"
        key = f"{rt.region}/{prefix}"
        if key not in self.evaluators:  # one per team and region: it remembers when it last ran each alarm's actions
            aws = self._aws(rt.region)
            self.evaluators[key] = AlarmEvaluator(aws.client("cloudwatch"), aws.client("autoscaling"), prefix,
                                                  LOCAL_TIME_SCALE)
        self.evaluators[key].tick()

    def publish_queue_metrics(self, rt: TeamRuntime) -> None:
        aws = self._aws(rt.region)
        data = []
        for url in rt.all_queue_urls:
            attrs = aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            dims = [{"Name": "QueueName", "Value": url.rstrip("/").rsplit("/", 1)[-1]}]
            data += [{"MetricName": "ApproximateNumberOfMessagesVisible", "Dimensions": dims, "Unit": "Count",
                      "Value": float(attrs.get("ApproximateNumberOfMessages", 0))},
                     {"MetricName": "ApproximateNumberOfMessagesNotVisible", "Dimensions": dims, "Unit": "Count",
                      "Value": float(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))}]
        aws.client("cloudwatch").put_metric_data(Namespace="AWS/SQS", MetricData=data)

    def shutdown(self) -> None:
        for router in self.routers.values():
            with contextlib.suppress(Exception):
                router.stop()
        self.fleet.stop_all()
        routers_path(self.root).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpufleet.local.cloud")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cloud = LocalCloud(args.root.absolute(), args.endpoint)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: cloud.stop_event.set())
    tmp = record_path(cloud.root).with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "started_at": time.time()}))
    tmp.replace(record_path(cloud.root))
    try:
        cloud.run()
    finally:
        cloud.shutdown()
        record_path(cloud.root).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def router_status(root: Path, team: str, endpoint: str) -> dict[str, Any]:
    """The local router's view: listener weights and each target's ``/ping`` health, per variant.
    ``team`` may be a DR rebuild's ``<team>@<region>``."""
    url = router_urls(root).get(f"{team}/{endpoint}")
    if url is None:
        return {}
    try:
        with urllib.request.urlopen(f"{url}{STATUS_PATH}", timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except (OSError, ValueError):
        return {}


def router_target_health(root: Path, team: str, endpoint: str) -> TargetHealth:
    """Local mode's stand-in for the ALB's target health: the router's own ``/ping`` checks."""

    def health(variant: Variant) -> tuple[int, int]:
        targets = router_status(root, team, endpoint).get("targets", {}).get(variant, [])
        return sum(1 for t in targets if t.get("healthy")), len(targets)

    return health
