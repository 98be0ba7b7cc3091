"""The training agent's parts, each against the real moto server or real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gpufleet.agent.identity import ImdsClient, imds_for, resolve_identity
from gpufleet.agent.training.checkpoints import CheckpointSync
from gpufleet.agent.training.claim import Claim, Skip, claim_job, heartbeat
from gpufleet.agent.training.layout import Layout, sm_environment
from gpufleet.agent.training.logship import LogShipper
from gpufleet.agent.training.metrics import MetricParser
from gpufleet.agent.training.process import JobProcess, descendants, direct_worker_env, script_failure
from gpufleet.agent.training.runner import runs_directly
from gpufleet.agent.training.spot import check_imds, complete_lifecycle_action
from gpufleet.schema.agent_config import AgentConfig
from gpufleet.schema.job_spec import MetricDefinition, parse_job_spec
from gpufleet.schema.training_settings import TrainingSettings
from gpufleet.store.dynamo import now_iso
from gpufleet.store.jobs import put_new_job, update_job
from tests.training.conftest import Team
from tests.training.fake_imds import FakeImds


def test_checkpoint_sync_uploads_only_changed_files_and_restore_brings_them_back(team: Team, tmp_path: Path) -> None:
    local = tmp_path / "ckpt"
    (local / "sub").mkdir(parents=True)
    (local / "a.pt").write_bytes(b"a" * 10)
    (local / "sub" / "b.pt").write_bytes(b"b")
    sync = CheckpointSync(team.clients, local, team.runtime.buckets.checkpoints, "job-1/")
    assert sync.sync() == 2
    assert sync.sync() == 0                                   # nothing changed: nothing sent
    (local / "a.pt").write_bytes(b"A" * 11)
    assert sync.sync() == 1
    fresh = tmp_path / "elsewhere"
    restored = CheckpointSync(team.clients, fresh, team.runtime.buckets.checkpoints, "job-1/")
    assert restored.restore() == 2
    assert (fresh / "a.pt").read_bytes() == b"A" * 11 and (fresh / "sub" / "b.pt").read_bytes() == b"b"
    assert restored.sync() == 0                               # restored files are not re-uploaded


def test_sm_environment_follows_the_sagemaker_training_toolkit(tmp_path: Path) -> None:
    spec = parse_job_spec({"name": "x", "team": "alpha", "entry_point": "pkg/train.py", "instance_count": 3,
                           "gpus_per_instance": 4, "hyperparameters": {"lr": 0.01, "opt": "adam", "amp": True},
                           "channels": {"train": "s3://bkt/t/", "val": "s3://bkt/v/"}, "source": "s3://bkt/code.tgz"})
    layout = Layout(tmp_path)
    env = sm_environment(layout, spec, slot=1, job_id="job-9")
    assert env["SM_MODEL_DIR"] == str(tmp_path / "model")
    assert env["SM_OUTPUT_DATA_DIR"] == str(tmp_path / "output" / "data")
    assert env["SM_CHANNEL_TRAIN"] == str(tmp_path / "input" / "data" / "train")
    assert json.loads(env["SM_CHANNELS"]) == ["train", "val"]
    assert json.loads(env["SM_HPS"]) == {"lr": 0.01, "opt": "adam", "amp": True}
    assert (env["SM_HP_LR"], env["SM_HP_OPT"], env["SM_HP_AMP"]) == ("0.01", "adam", "true")
    assert (env["SM_CURRENT_HOST"], json.loads(env["SM_HOSTS"])) == ("algo-2", ["algo-1", "algo-2", "algo-3"])
    assert env["SM_NUM_GPUS"] == "4" and env["SM_MODULE_NAME"] == "pkg.train"
    assert json.loads(env["SM_USER_ARGS"]) == ["--lr", "0.01", "--opt", "adam", "--amp", "true"]


def test_metric_regexes_feed_the_job_record_and_cloudwatch(team: Team) -> None:
    parser = MetricParser([MetricDefinition(name="acc", regex=r"acc=([0-9.]+)"),
                           MetricDefinition(name="loss", regex=r"loss: ([-0-9.e]+)")])
    for line in ("epoch 1 loss: 2.5e-1 acc=0.5", "acc=0.75", "acc=nan", "noise"):
        parser.feed(line)
    assert parser.snapshot() == {"acc": 0.75, "loss": 0.25}
    assert parser.flush(team.clients.cloudwatch, team.runtime.team, "job-m") == 3
    assert parser.flush(team.clients.cloudwatch, team.runtime.team, "job-m") == 0
    names = {m["MetricName"] for m in team.clients.cloudwatch.list_metrics(
        Namespace="gpufleet", Dimensions=[{"Name": "Job", "Value": "job-m"}])["Metrics"]}
    assert names == {"acc", "loss"}


def test_log_shipper_uploads_to_s3_and_streams_whole_lines_to_cloudwatch_logs(team: Team, tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    path.write_text("one\ntwo\npart")
    team.clients.client("logs").create_log_group(logGroupName=f"/gf/{team.runtime.team}")   # the stack's group
    ship = LogShipper(team.clients, path, team.runtime.buckets.logs, "job-l", "i-9",
                      log_group=f"/gf/{team.runtime.team}")
    ship.flush()
    with path.open("a") as f:
        f.write("ial\n")
    ship.flush()
    body = team.clients.s3.get_object(Bucket=team.runtime.buckets.logs, Key="jobs/job-l/i-9.log")["Body"].read()
    assert body == b"one\ntwo\npartial\n"
    events = team.clients.client("logs").get_log_events(logGroupName=f"/gf/{team.runtime.team}",
                                                        logStreamName="job-l/i-9")["events"]
    assert [e["message"] for e in events] == ["one", "two", "partial"]


def test_log_shipper_never_creates_the_log_group_hosts_are_not_granted_that(team: Team, tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    path.write_text("line\n")
    logs = team.clients.client("logs")
    ship = LogShipper(team.clients, path, team.runtime.buckets.logs, "job-n", "i-9",
                      log_group=f"/gf/{team.runtime.team}/missing")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        ship.flush()
    assert not logs.describe_log_groups(logGroupNamePrefix=f"/gf/{team.runtime.team}/missing")["logGroups"]


def test_identity_comes_from_imdsv2_with_a_session_token() -> None:
    imds = FakeImds("i-0abc", "10.0.1.7")
    try:
        config = AgentConfig.model_validate({"role": "training", "team": _runtime_doc()})
        identity = resolve_identity(config, ImdsClient(imds.endpoint))
        assert (identity.instance_id, identity.address, identity.team) == ("i-0abc", "10.0.1.7", "alpha")
        assert imds.tokenless_reads == 0
        assert check_imds(ImdsClient(imds.endpoint)) is None
        imds.announce_scale_in()
        assert check_imds(ImdsClient(imds.endpoint)) == ("scale-in", "target-lifecycle-state Terminated")
        imds.announce_spot_interruption()
        assert check_imds(ImdsClient(imds.endpoint))[0] == "spot"  # type: ignore[index]
    finally:
        imds.close()


def test_local_mode_takes_identity_from_config_and_watches_imds_only_when_given() -> None:
    config = AgentConfig.model_validate({"role": "training", "team": _runtime_doc(),
                                         "local": {"aws_endpoint_url": "http://127.0.0.1:1", "instance_id": "host-1"}})
    assert resolve_identity(config).instance_id == "host-1" and imds_for(config) is None


def test_lifecycle_completion_failure_is_logged_and_not_fatal(team: Team, caplog: pytest.LogCaptureFixture) -> None:
    """moto answers complete_lifecycle_action with HTTP 500: the agent must carry on."""
    assert complete_lifecycle_action(team.clients, "no-such-asg", "training-drain", "i-1") is False
    assert "could not complete the lifecycle action" in caplog.text


def test_stopping_a_job_kills_its_whole_tree_even_a_worker_that_ignores_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "launcher.py"
    script.write_text(textwrap.dedent("""
        import signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('worker up', flush=True); "
            "time.sleep(600)"], start_new_session=True)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    """))
    lines: list[str] = []
    proc = JobProcess([sys.executable, str(script)], dict(os.environ), tmp_path, tmp_path / "log", lines.append)
    proc.start()
    deadline = time.monotonic() + 30
    while "worker up" not in lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.proc is not None
    tree = [proc.proc.pid, *descendants(proc.proc.pid)]
    assert len(tree) == 2
    assert proc.stop(grace_s=0.5) == -signal.SIGKILL
    time.sleep(0.2)
    for pid in tree:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_only_one_process_on_one_host_skips_torchrun() -> None:
    def spec(**fields: object):  # type: ignore[no-untyped-def]
        return parse_job_spec({"name": "j", "team": "alpha", "entry_point": "train.py", **fields})

    assert runs_directly(spec()) and runs_directly(spec(gpus_per_instance=1))
    assert not runs_directly(spec(gpus_per_instance=2))   # one process per GPU: torchrun starts them
    assert not runs_directly(spec(instance_count=2))      # several hosts: torchrun's rendezvous


def test_a_joining_node_waits_for_node_0s_store_as_long_as_the_rendezvous() -> None:
    """Node 0 may still be installing requirements or pulling an image when a peer starts torchrun. The
    peer's store connection gives up after ``read_timeout`` (torch's default: 60 s), so the launcher line
    must set it, in words torchrun's own parser and rendezvous parameters read."""
    from types import SimpleNamespace

    from torch.distributed.elastic.rendezvous import RendezvousParameters
    from torch.distributed.run import config_from_args, parse_args

    from gpufleet.agent.identity import Identity
    from gpufleet.agent.training.runner import launcher_argv

    spec = parse_job_spec({"name": "j", "team": "alpha", "entry_point": "train.py", "instance_count": 2,
                           "max_runtime_s": 3600})
    ctx = SimpleNamespace(job_python="python", config=None,
                          identity=Identity("h1", "10.0.0.2", "alpha", "training"))
    for slot, hosts in ((0, True), (1, False)):
        argv = launcher_argv(ctx, Claim("job", 1, slot, spec, "10.0.0.1:29400"))  # type: ignore[arg-type]
        assert argv[1:3] == ["-m", "torch.distributed.run"]
        config, _, _ = config_from_args(parse_args(argv[3:]))
        params = RendezvousParameters(config.rdzv_backend, config.rdzv_endpoint, config.run_id, config.min_nodes,
                                      config.max_nodes, config.local_addr, **config.rdzv_configs)
        assert params.get_as_bool("is_host") is hosts
        assert params.get_as_int("read_timeout") == params.get_as_int("join_timeout") == 900


def test_a_script_run_directly_can_init_process_group_as_under_torchrun(tmp_path: Path) -> None:
    """Scripts written for torchrun call ``init_process_group()`` with the env:// defaults; without the
    launcher's store, rank 0 must be able to start its own on MASTER_PORT."""
    script = tmp_path / "dist.py"
    script.write_text(textwrap.dedent("""
        import torch.distributed as dist
        dist.init_process_group("gloo")
        print(f"rank={dist.get_rank()} world={dist.get_world_size()}", flush=True)
        dist.destroy_process_group()
    """))
    lines: list[str] = []
    proc = JobProcess([sys.executable, "-u", str(script)], {**os.environ, **direct_worker_env("job-1")},
                      tmp_path, tmp_path / "log", lines.append)
    proc.start()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.finish_output()
    assert proc.poll() == 0, lines
    assert "rank=0 world=1" in lines


def test_failure_reason_keeps_the_scripts_lines_and_exit_code_not_torchruns_report() -> None:
    lines = ["W1126 19:00:00.000000 10 site-packages/torch/distributed/run.py:1] OMP_NUM_THREADS set",
             "step 1", "ValueError: bad batch",
             "E1126 19:37:39.366000 11761 site-packages/torch/distributed/elastic/multiprocessing/api.py:1002] "
             "failed (exitcode: 3) local_rank: 0", "Traceback (most recent call last):", "  File ...",
             "ChildFailedError:", "====="]
    assert script_failure(lines, 1, keep=5) == (3, ["step 1", "ValueError: bad batch"])
    assert script_failure(["plain", "lines"], 2, keep=1) == (2, ["lines"])


def _runtime_doc() -> dict[str, object]:
    return {"platform": "p", "team": "alpha", "region": "us-east-1",
            "buckets": {b: f"p-alpha-{b}" for b in ("data", "artifacts", "checkpoints", "capture", "logs")},
            "queue_url": "q", "dlq_url": "d",
            "tables": {"jobs": "j", "models": "m", "endpoints": "e", "approvals": "a"},
            "training": {"asg": "asg"}}


def _queued(team: Team, job_id: str, **spec: object) -> None:
    put_new_job(team.clients, team.runtime, {
        "job_id": job_id, "status": "QUEUED", "attempts": 0, "created_at": now_iso(),
        "spec": {"name": "c", "team": team.runtime.team, "entry_point": "t.py", "source": "s3://bucket/x", **spec}})


def test_only_one_of_two_agents_claims_a_job_and_node_slots_are_unique(team: Team) -> None:
    from gpufleet.agent.identity import Identity

    settings = TrainingSettings(rendezvous_port=29500)
    hosts = [Identity(f"h{i}", f"10.0.0.{i}", team.runtime.team, "training") for i in range(3)]
    _queued(team, "single")
    first, second = (claim_job(team.clients, team.runtime, "single", h, settings) for h in hosts[:2])
    assert isinstance(first, Claim) and (first.attempt, first.slot, first.rendezvous) == (1, 0, None)
    assert isinstance(second, Skip) and second.action == "defer"
    _queued(team, "multi", instance_count=2)
    claims = [claim_job(team.clients, team.runtime, "multi", h, settings) for h in hosts]
    assert [(c.slot, c.rendezvous) for c in claims[:2]] == [(0, "10.0.0.0:29500"), (1, "10.0.0.0:29500")]  # type: ignore[union-attr]
    assert isinstance(claims[2], Skip)                  # the job is full


def test_a_picked_rendezvous_port_lies_outside_the_ephemeral_range_and_is_free(team: Team) -> None:
    """``rendezvous_port: 0`` (several agents on one host) picks node 0's store port at the claim, and
    torchrun binds it seconds later. A port from the kernel's ephemeral range could become an outgoing
    connection's source port in between (a CI run failed so), so the pick lies outside that range."""
    from gpufleet.agent.identity import Identity

    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    host = Identity("h0", "127.0.0.1", team.runtime.team, "training")
    ports = []
    for i in range(5):
        _queued(team, f"multi-{i}", instance_count=2)
        claim = claim_job(team.clients, team.runtime, f"multi-{i}", host, TrainingSettings(rendezvous_port=0))
        assert isinstance(claim, Claim) and claim.rendezvous
        ports.append(int(claim.rendezvous.rsplit(":", 1)[1]))
    assert all(not low <= port <= high for port in ports), (ports, (low, high))
    for port in ports:   # each was free when picked and still is: nothing here listens on it
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_running_job_without_heartbeats_is_taken_over_and_its_old_owner_learns_it(team: Team) -> None:
    from gpufleet.agent.identity import Identity

    settings = TrainingSettings(stale_after_s=0.5)
    a, b = (Identity(h, "127.0.0.1", team.runtime.team, "training") for h in ("a", "b"))
    _queued(team, "stale")
    claim_a = claim_job(team.clients, team.runtime, "stale", a, settings)
    assert isinstance(claim_a, Claim)
    time.sleep(0.7)
    claim_b = claim_job(team.clients, team.runtime, "stale", b, settings)
    assert isinstance(claim_b, Claim) and claim_b.attempt == 2
    assert heartbeat(team.clients, team.runtime, claim_a, {}) is False
    assert heartbeat(team.clients, team.runtime, claim_b, {"acc": 0.5}) is True
    assert update_job(team.clients, team.runtime, "stale", {"status": "CANCELLED"}, expect_status=["RUNNING"])
    assert heartbeat(team.clients, team.runtime, claim_b, {}) is False


def test_the_training_agent_imports_no_torch_and_its_example_config_is_valid(repo_env: dict[str, str]) -> None:
    import subprocess

    code = ("import sys, gpufleet.agent.training.daemon, gpufleet.jobs, gpufleet.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], env=repo_env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    example = Path(__file__).parents[2] / "examples" / "training" / "agent.yaml"
    check = subprocess.run([sys.executable, "-m", "gpufleet.agent", "check-config", "--config", str(example)],
                           env=repo_env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


class QuotaCheckingLogs:
    """The emulator's CloudWatch Logs client, checking PutLogEvents' documented quotas (moto does not)
    and failing one call of our choosing as a network error would."""

    def __init__(self, real: Any, fail_call: int) -> None:
        self.real, self.fail_call, self.calls = real, fail_call, 0
        self.accepted: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_log_events(self, **kwargs: Any) -> Any:
        self.calls += 1
        events = kwargs["logEvents"]
        sizes = [len(e["message"].encode()) + 26 for e in events]
        assert len(events) <= 10_000 and sum(sizes) <= 1_048_576 and max(sizes) <= 262_144, "over a quota"
        if self.calls == self.fail_call:
            raise ConnectionError("network gone mid-flush")
        out = self.real.put_log_events(**kwargs)
        self.accepted += [e["message"] for e in events]
        return out


def test_log_shipper_keeps_to_cloudwatch_quotas_and_sends_no_duplicates_after_a_failure(
        team: Team, tmp_path: Path) -> None:
    """1.5 MB of lines and one 600 KB line: batches within 1 MiB / 10,000 events, the long line split into
    events of at most 256 KiB; the second batch fails once, and the retry sends only what was left."""
    lines = [f"{i:05d} " + "x" * 494 for i in range(3000)] + ["é" * 300_000, "end"]
    path = tmp_path / "job.log"
    path.write_text("\n".join(lines) + "\n")
    group = f"/gf/{team.runtime.team}"
    team.clients.client("logs").create_log_group(logGroupName=group)   # the team stack makes it; the agent never does
    logs = QuotaCheckingLogs(team.clients.client("logs"), fail_call=2)
    ship = LogShipper(team.clients, path, team.runtime.buckets.logs, "job-q", "i-9", log_group=group)
    with pytest.raises(ConnectionError):
        ship._flush_cloudwatch(logs)
    assert logs.accepted == lines[:len(logs.accepted)]   # the first batch went through before the failure
    ship._flush_cloudwatch(logs)
    assert "".join(logs.accepted[3000:-1]) == lines[3000]     # the long line, split and whole
    assert logs.accepted[:3000] == lines[:3000] and logs.accepted[-1] == "end"   # each line once
