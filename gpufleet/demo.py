"""The demo: the whole platform lifecycle on this machine, against the emulated AWS with the real Terraform.

local cloud up → two digits models trained through the queue by training agents → registered, approved →
v1 deployed → v2 canaried in with guarded weights → held-out digits through the endpoint → a summary.
``gpufleet demo`` is a thin layer over ``run_demo``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.config import PlatformConfig, parse_config
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.workspace import teams_dir

PLATFORM, TEAM, ENDPOINT, MODEL = "demo", "ml", "digits", "digits"
DEMO_CONFIG: dict[str, Any] = {
    "platform": {"name": PLATFORM, "region": "us-east-1"},
    "teams": [{"name": TEAM,
               "training": {"instance_types": ["g5.xlarge"], "max_instances": 2, "spot_percentage": 100},
               "endpoints": [{"name": ENDPOINT, "instance_type": "g5.xlarge", "min_instances": 1,
                              "max_instances": 2}]}],
}
# v1 is deliberately small so that v2's canary visibly improves on it.
JOBS: list[tuple[str, dict[str, Any]]] = [("digits-small", {"epochs": 2, "hidden": 16}),
                                          ("digits", {"epochs": 20, "hidden": 128})]
Say = Callable[[str], None]


@dataclass
class DemoResult:
    phases: dict[str, float] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)      # job name -> model version
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    accuracy: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    url: str = ""


def demo_config() -> PlatformConfig:
    return parse_config(DEMO_CONFIG, "demo config")


def example_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "examples" / "training" / "digits"
    if not (path / "train.py").is_file():
        raise UserInputError([f"{path}: the demo's training script is missing (run the demo from a gpufleet checkout)"])
    return path


def held_out_digits(seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """The test split train.py holds out (same seed, size and stratification)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise RuntimeFailure("demo", "scikit-learn is not installed", "pip install 'gpufleet[dev]'") from None
    x, y = load_digits(return_X_y=True)
    _, x_test, _, y_test = train_test_split(x.astype("float32"), y, test_size=0.2, random_state=seed, stratify=y)
    return x_test.tolist(), [int(v) for v in y_test]


class Phases:
    def __init__(self, result: DemoResult, say: Say) -> None:
        self.result, self.say = result, say

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.say(f"[bold]▶ {name}[/]")
        started = time.monotonic()
        yield
        self.result.phases[name] = time.monotonic() - started
        self.say(f"[green]✓ {name}[/] in {self.result.phases[name]:.1f} s")


def check_workspace(root: Path) -> None:
    others = [p.stem for p in teams_dir(root).glob("*.json") if p.stem != TEAM]
    if others:
        raise UserInputError([f"{root}: a local cloud with team(s) {', '.join(others)} is here (run "
                              "`gpufleet local down` first, or run the demo in another directory)"])


def invoke_held_out(url: str, say: Say) -> tuple[float, list[float]]:
    """Accuracy and per-request latencies (ms) of the endpoint on the held-out digits, one request each."""
    import json

    from gpufleet.invoke import invoke_once

    x, y = held_out_digits()
    correct, latencies = 0, []
    for i, (row, label) in enumerate(zip(x, y, strict=True)):
        started = time.perf_counter()
        status, body = invoke_once(url, json.dumps([row]).encode(), "application/json", "application/json")
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeFailure("demo invoke", f"request {i} answered {status}: {body[:200]!r}",
                                 "check `gpufleet endpoint status digits`")
        logits = json.loads(body)[0]
        correct += int(max(range(len(logits)), key=logits.__getitem__) == label)
        if (i + 1) % 120 == 0:
            say(f"  {i + 1}/{len(y)} held-out digits sent")
    return correct / len(y), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency_summary(latencies: list[float]) -> dict[str, float]:
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "mean": statistics.fmean(latencies)}


def job_spec(name: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "team": TEAM, "entry_point": "train.py", "hyperparameters": hyperparameters,
            "output_model_name": MODEL, "max_runtime_s": 900, "checkpoint_interval_s": 30,
            "metric_definitions": [{"name": "test_accuracy", "regex": "test_accuracy=([0-9.]+)"}]}


def run_demo(root: Path, say: Say, sink: Any = None, bake_s: float | None = None, job_timeout_s: float = 600.0,
             cfg: PlatformConfig | None = None) -> DemoResult:
    from gpufleet.aws import AwsClients
    from gpufleet.jobs.submit import submit_job
    from gpufleet.jobs.wait import wait_for_job
    from gpufleet.local.alarms import LOCAL_TIME_SCALE
    from gpufleet.local.cloud import router_target_health, router_urls
    from gpufleet.local.lifecycle import local_up
    from gpufleet.registry.models import approve_model_version
    from gpufleet.rollout.engine import Rollout, RolloutOptions
    from gpufleet.schema.job_spec import parse_job_spec
    from gpufleet.schema.runtime import load_runtime
    from gpufleet.store.models import get_model_version
    from gpufleet.teams import TeamContext

    result = DemoResult()
    phase = Phases(result, say)
    check_workspace(root)
    with phase("local cloud up"):
        up = local_up(root, cfg or demo_config(), sink)
    runtime = load_runtime(teams_dir(root) / f"{TEAM}.json")
    ctx = TeamContext(root, runtime, AwsClients.create(runtime.region, up.emulator.endpoint), local=True)
    with phase("train"):
        source = example_dir()
        ids = {name: submit_job(ctx.aws, runtime, parse_job_spec(job_spec(name, hps)), source)
               for name, hps in JOBS}
        say(f"  queued {', '.join(ids.values())}; the training ASG scales out on the queue backlog")
        for name, job_id in ids.items():
            record = wait_for_job(ctx, job_id, job_timeout_s,
                                  lambda r: say(f"  {r['job_id']}: {r['status']}"
                                                + (f" on {r['claimed_by']}" if r.get("claimed_by") else "")))
            result.versions[name] = int(str(record["model"]).rsplit(":", 1)[1])
    with phase("register + approve"):
        for name, version in sorted(result.versions.items(), key=lambda kv: kv[1]):
            record = get_model_version(ctx.aws, runtime, MODEL, version)
            result.metrics[version] = {k: float(v) for k, v in ((record.get("lineage") or {}).get("metrics")
                                                                or {}).items()}
            approve_model_version(ctx.aws, runtime, MODEL, version)
            say(f"  {MODEL}:{version} ({name}, {result.metrics[version]}) was {record['status']}, now Approved")
    health = router_target_health(root, TEAM, ENDPOINT)
    small, big = result.versions["digits-small"], result.versions["digits"]
    with phase(f"deploy {MODEL}:{small}"):
        Rollout(ctx.aws, runtime, ENDPOINT, health, RolloutOptions("all-at-once", bake_s=bake_s, poll_s=1.0,
                                                                      time_scale=LOCAL_TIME_SCALE),
                lambda line: say(f"  {line}")).deploy(MODEL, small)
    with phase(f"canary {MODEL}:{big}"):
        Rollout(ctx.aws, runtime, ENDPOINT, health, RolloutOptions("canary", canary_percent=10, bake_s=bake_s,
                                                                   poll_s=1.0, time_scale=LOCAL_TIME_SCALE),
                lambda line: say(f"  {line}")).deploy(MODEL, big)
    result.url = router_urls(root)[f"{TEAM}/{ENDPOINT}"]
    with phase("invoke held-out digits"):
        result.accuracy, latencies = invoke_held_out(result.url, say)
        result.samples, result.latency_ms = len(latencies), latency_summary(latencies)
    return result
