"""One attempt of a claimed job: fetch inputs, restore checkpoints, run the script (under torchrun when it
has several processes or hosts, directly when it has one) with the SageMaker contract, heartbeat, sync
checkpoints and logs, then conclude by the job lifecycle:

- exit 0: package, upload and register the model (on a multi-node job, the node that has one), SUCCEEDED,
  delete the message;
- exit != 0 or max runtime: FAILED with the reason (and the last log lines), delete the message;
- spot/scale-in notice or agent shutdown: final checkpoint sync, INTERRUPTED, message visible again;
- claim lost (cancelled, ended by a peer, taken over): stop; settle the message by the job's new status.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gpufleet.agent.containers import ContainerError, agent_image, agent_settings, prepare_container
from gpufleet.agent.identity import Identity
from gpufleet.agent.requirements import RequirementsError, cache_root, requirements_python
from gpufleet.agent.training.checkpoints import CheckpointSync
from gpufleet.agent.training.claim import Claim, finish, heartbeat
from gpufleet.agent.training.container import container_job, failure_reason
from gpufleet.agent.training.inputs import InputError, fetch_inputs
from gpufleet.agent.training.isolation import JobUser, hand_back, hand_over, resolve_job_user
from gpufleet.agent.training.jobcreds import container_credentials_env, job_environment, start_job_credentials
from gpufleet.agent.training.layout import (
    JOB_DIRS,
    Layout,
    checkpoint_location,
    hyperparameter_args,
    sm_environment,
    write_input_config,
)
from gpufleet.agent.training.logship import LogShipper
from gpufleet.agent.training.metrics import MetricParser
from gpufleet.agent.training.output import publish_model
from gpufleet.agent.training.periodic import Every
from gpufleet.agent.training.process import JobProcess, direct_worker_env, kill_orphans, script_failure
from gpufleet.agent.training.queues import Receipt
from gpufleet.agent.training.spot import Notice
from gpufleet.aws import AWS_ERRORS, AwsClients
from gpufleet.schema import JOB_CLAIMABLE, JOB_FINAL
from gpufleet.schema.agent_config import AgentConfig
from gpufleet.schema.job_spec import JobSpec
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.jobs import get_job, update_job
from gpufleet.store.wake import MAX_DELAY_S, wake_agents

log = logging.getLogger("gpufleet.agent.runner")
T = TypeVar("T")


@dataclass
class AgentContext:
    config: AgentConfig
    clients: AwsClients
    identity: Identity
    layout: Layout
    notice: Notice
    stop: threading.Event
    subreaper: bool = False
    current_job: str | None = None
    jobs_run: int = 0
    max_receives: int | None = None   # the queue's redrive maxReceiveCount
    poll_failures: int = 0     # consecutive; /healthz turns unhealthy when the queue stays unreachable
    job_user: JobUser | None = None   # who job code runs as (None: the agent's user, as before isolation)
    job_python: str | None = None   # the job's requirements.txt environment, when it has one

    @property
    def runtime(self) -> TeamRuntime:
        return self.config.team

    def requeue(self, job_id: str, receipt: Receipt, delay_s: int = 0) -> None:
        _requeue(self, job_id, receipt, delay_s)

    def message(self, receipt: Receipt, *, delete: bool = False, visibility: int | None = None) -> None:
        """Delete the message or change its visibility; a stale receipt is logged, not fatal."""
        sqs, url, handle = self.clients.sqs, receipt.queue_url, receipt.handle
        try:
            if delete:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
            elif visibility is not None:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=visibility)
        except AWS_ERRORS as exc:
            log.warning("queue message update failed", extra={"error": str(exc)})

    def dead_letter(self, receipt: Receipt, body: str) -> None:
        """Move a given-up job's message to the DLQ. If the send fails the message stays, and whoever
        receives it next (the job record says dead_letter) tries again."""
        try:
            self.clients.sqs.send_message(QueueUrl=self.runtime.dlq_url, MessageBody=body)
        except AWS_ERRORS as exc:
            log.warning("could not move the message to the DLQ; it stays queued", extra={"error": str(exc)})
            return
        self.message(receipt, delete=True)


def _requeue(ctx: AgentContext, job_id: str, receipt: Receipt, delay_s: int = 0) -> None:
    """Hand a job back as a fresh message (visible after ``delay_s``): the receives of a job that was
    interrupted or merely looked at (a deferral) do not count toward the queue's redrive limit, so a
    message reaches the DLQ only unreadable or when the agents give the job up (``max_attempts``),
    never while its record still waits to run. If the send fails the old message is made visible
    instead (one more receive, never a lost job)."""
    try:
        # The queue the message came from: the job's own priority. A longer delay: a later look defers again.
        ctx.clients.sqs.send_message(QueueUrl=receipt.queue_url, MessageBody=json.dumps({"job_id": job_id}),
                                     DelaySeconds=min(delay_s, MAX_DELAY_S))
    except AWS_ERRORS as exc:
        log.warning("could not re-enqueue the job; releasing its message", extra={"error": str(exc)})
        ctx.message(receipt, visibility=delay_s)
        return
    ctx.message(receipt, delete=True)
    if why := wake_agents(ctx.clients.sqs, ctx.runtime, receipt.priority, delay_s=delay_s):
        log.warning("could not send the wake-up hint; idle agents find the job on their next sweep, "
                    "within training.wake_wait_s", extra={"job_id": job_id, "error": why})


def runs_directly(spec: JobSpec) -> bool:
    """One host and one process (at most one GPU): torchrun's launcher would only add its start-up."""
    return spec.instance_count == 1 and spec.procs_per_host == 1


def launcher_argv(ctx: AgentContext, claim: Claim) -> list[str]:
    spec = claim.spec
    assert spec.entry_point, "a spec without an image has an entry point (JobSpec checks it)"
    python = ctx.job_python or ctx.config.training.python or sys.executable
    if runs_directly(spec):
        return [python, "-u", spec.entry_point, *hyperparameter_args(spec)]   # as torchrun runs its worker
    argv = [python, "-m", "torch.distributed.run",
            f"--nproc-per-node={spec.procs_per_host}", "--max-restarts=0"]
    if spec.instance_count == 1:
        argv += ["--standalone", "--nnodes=1"]
    else:
        # A joiner may start before node 0's store listens: node 0 may still be fetching inputs, installing
        # requirements or pulling an image. Its connection attempts last read_timeout (torch's default:
        # 60 s), so it gets as long as the rendezvous itself.
        join_timeout = min(spec.max_runtime_s, 900)
        rdzv_conf = f"is_host={int(claim.slot == 0)},join_timeout={join_timeout},read_timeout={join_timeout}"
        argv += [f"--nnodes={spec.instance_count}", "--rdzv-backend=c10d", f"--rdzv-endpoint={claim.rendezvous}",
                 f"--rdzv-id={claim.job_id}-{claim.attempt}", f"--rdzv-conf={rdzv_conf}",
                 f"--local-addr={ctx.identity.address}"]
    return [*argv, spec.entry_point, *hyperparameter_args(spec)]


def job_env(ctx: AgentContext, claim: Claim) -> dict[str, str]:
    env = {**os.environ, **sm_environment(ctx.layout, claim.spec, claim.slot, claim.job_id),
           "PYTHONUNBUFFERED": "1", "GPUFLEET_JOB_ID": claim.job_id, "GPUFLEET_ATTEMPT": str(claim.attempt)}
    if runs_directly(claim.spec):
        env.update(direct_worker_env(f"{claim.job_id}-{claim.attempt}"))
    return env


def run_claimed_job(ctx: AgentContext, claim: Claim, receipt: Receipt) -> str:
    """Run one attempt; returns the status it ended in (as this host saw it)."""
    ctx.current_job = claim.job_id
    try:
        return _run(ctx, claim, receipt)
    finally:
        ctx.current_job = None
        ctx.jobs_run += 1
        if ctx.subreaper:
            kill_orphans()


@dataclass
class Attempt:
    """What one attempt gathers on its way: inputs for the lineage, the checkpoint and log uploaders."""

    code_sha: str
    inputs: list[dict[str, str]]
    ckpt: CheckpointSync
    ship: LogShipper
    metrics: MetricParser


def _run(ctx: AgentContext, claim: Claim, receipt: Receipt) -> str:
    try:
        ctx.layout.reset()
        attempt = _prepare(ctx, claim)
        if claim.spec.image:   # the image brings its own dependencies
            image, settings, agent = agent_image(ctx.config, claim.spec.image), agent_settings(ctx.config), \
                ctx.identity.instance_id
            _with_heartbeat(ctx, claim, receipt, lambda: prepare_container(ctx.clients, settings, image, agent))
        else:
            ctx.job_python = _with_heartbeat(ctx, claim, receipt, lambda: _install_requirements(ctx))
    except ContainerError as exc:
        return _conclude_failure(ctx, claim, receipt, f"image: {exc}")
    except (InputError, *AWS_ERRORS) as exc:
        return _conclude_failure(ctx, claim, receipt, f"inputs: {exc}")
    except RequirementsError as exc:
        return _conclude_failure(ctx, claim, receipt, f"requirements.txt: pip failed: {exc}")
    except OSError as exc:  # this host's disk (full, read-only...): the job must not stay RUNNING until stale
        ctx.layout.reset_quietly()
        return _conclude_failure(ctx, claim, receipt, f"preparing the job on {ctx.identity.instance_id}: {exc} "
                                 "(free space under the agent's work_root, or give the job a larger volume)")
    user = ctx.job_user or resolve_job_user(ctx.config.training.job_user, local=True)
    try:
        creds, creds_env = start_job_credentials(
            ctx.clients.client("sts"), ctx.runtime, claim.spec, claim.job_id, ctx.layout.credentials,
            ctx.config.training.job_credentials_s, user.owner)
    except AWS_ERRORS as exc:
        return _conclude_failure(ctx, claim, receipt, f"job role: {exc}")
    hand_over([ctx.layout.root / d for d in JOB_DIRS], user)
    proc = _job_process(ctx, claim, attempt, user, creds_env)
    try:
        try:
            proc.start()
        except OSError as exc:
            return _conclude_failure(ctx, claim, receipt, f"could not start the job's process: {exc}")
        outcome, code = _supervise(ctx, claim, receipt, proc, attempt)
    finally:
        if creds:   # the session still expires on its own; stopping just ends the refreshes
            creds.stop()
        hand_back([ctx.layout.root / d for d in JOB_DIRS], user)
    if outcome == "exited" and code == 0:
        return _conclude_success(ctx, claim, receipt, attempt.code_sha, attempt.inputs, attempt.metrics.snapshot())
    if outcome == "exited":
        if claim.spec.instance_count > 1 and _peer_interrupted(ctx, claim):
            return _settle_lost_race(ctx, claim, receipt)
        code, lines = script_failure(list(proc.tail), code, ctx.config.training.log_tail_lines)
        if claim.spec.image:
            return _conclude_failure(ctx, claim, receipt, f"the container exited with code {code}; " + (
                failure_reason(ctx.layout) or "last lines:\n" + "\n".join(lines)))
        return _conclude_failure(ctx, claim, receipt,
                                 f"the script exited with code {code}; last lines:\n" + "\n".join(lines))
    if outcome == "timeout":
        return _conclude_failure(ctx, claim, receipt, f"max runtime of {claim.spec.max_runtime_s}s exceeded")
    if outcome == "interrupted":
        return _conclude_interrupted(ctx, claim, receipt)
    return _settle_lost_race(ctx, claim, receipt)


def _prepare(ctx: AgentContext, claim: Claim) -> Attempt:
    """Fetch code and channels, restore checkpoints, write the input config. Raises InputError."""
    spec, layout = claim.spec, ctx.layout
    ship = LogShipper(ctx.clients, layout.job_log, ctx.runtime.buckets.logs, claim.job_id,
                      ctx.identity.instance_id,
                      ctx.config.training.cloudwatch_log_group or ctx.runtime.training.log_group)
    ckpt = CheckpointSync(ctx.clients, layout.checkpoints,
                          *checkpoint_location(spec, ctx.runtime.buckets.checkpoints, claim.job_id))
    code_sha, inputs = fetch_inputs(ctx.clients, spec, layout)
    restored = ckpt.restore()
    write_input_config(layout, spec, claim.slot)
    with layout.job_log.open("a") as f:
        f.write(f"[gpufleet] job {claim.job_id} attempt {claim.attempt} node {claim.slot} on "
                f"{ctx.identity.instance_id}: restored {restored} checkpoint files\n")
    return Attempt(code_sha, inputs, ckpt, ship, MetricParser(spec.metric_definitions))


def _job_process(ctx: AgentContext, claim: Claim, attempt: Attempt, user: JobUser,
                 credentials_env: dict[str, str]) -> JobProcess:
    """torchrun on the host (script mode) as the job user with the job role's credentials, or the job's
    image (bring your own container)."""
    tail = ctx.config.training.log_tail_lines
    if claim.spec.image:
        credentials_dir = ctx.layout.credentials if credentials_env else None
        return container_job(agent_settings(ctx.config), ctx.layout, claim, agent_image(ctx.config, claim.spec.image),
                             ctx.identity.instance_id, attempt.metrics.feed, tail, user,
                             container_credentials_env(credentials_env), credentials_dir)
    return JobProcess(launcher_argv(ctx, claim), job_environment(job_env(ctx, claim), credentials_env),
                      ctx.layout.code, ctx.layout.job_log, attempt.metrics.feed, tail, user.popen_args())


def _install_requirements(ctx: AgentContext) -> str | None:
    """The source's requirements.txt environment (None without one)."""
    reader = ctx.job_user.gid if ctx.job_user and ctx.job_user.isolated else None   # the job user runs it
    return requirements_python(ctx.layout.code, cache_root(ctx.config.pip, ctx.config.work_root),
                               ctx.config.training.python or sys.executable, ctx.config.pip, ctx.layout.job_log,
                               reader)


def _with_heartbeat(ctx: AgentContext, claim: Claim, receipt: Receipt, step: Callable[[], T]) -> T:
    """Run a preparation step while the job heartbeats: a first pip install or image pull may take
    minutes, and a silent job would be taken over as dead."""
    settings = ctx.config.training

    def beat() -> None:
        ctx.message(receipt, visibility=settings.visibility_timeout_s)
        heartbeat(ctx.clients, ctx.runtime, claim, {})

    timer = Every(settings.heartbeat_s, beat, "heartbeat")
    timer.start()
    try:
        return step()
    finally:
        timer.stop()


def _supervise(ctx: AgentContext, claim: Claim, receipt: Receipt, proc: JobProcess,
               attempt: Attempt) -> tuple[str, int]:
    """Heartbeat, sync and ship while the job runs; returns (outcome, exit code) once it has ended."""
    settings, lost = ctx.config.training, threading.Event()

    def beat() -> None:
        ctx.message(receipt, visibility=settings.visibility_timeout_s)
        if not heartbeat(ctx.clients, ctx.runtime, claim, attempt.metrics.snapshot()):
            lost.set()

    def ship_logs() -> None:
        attempt.ship.flush()
        attempt.metrics.flush(ctx.clients.cloudwatch, ctx.runtime.team, claim.job_id)

    timers = [Every(settings.heartbeat_s, beat, "heartbeat"), Every(settings.log_flush_s, ship_logs, "log-ship")]
    # Every node syncs its checkpoint folder to the one prefix, as SageMaker does: which node holds
    # global rank 0 (usually the one that writes checkpoints) is torchrun's choice, not ours.
    timers.append(Every(claim.spec.checkpoint_interval_s, attempt.ckpt.sync, "checkpoint-sync"))
    for timer in timers:
        timer.start()
    log.info("job process started", extra={"job_id": claim.job_id, "pid": proc.proc.pid if proc.proc else None})
    outcome, code = _wait(ctx, proc, claim.spec.max_runtime_s, lost)
    log.info("job process ended", extra={"job_id": claim.job_id, "outcome": outcome, "exit_code": code})
    for timer in timers:
        timer.stop()
    _final_uploads(ctx, claim, attempt.ckpt if outcome != "lost" else None, ship_logs)
    return outcome, code


def _peer_interrupted(ctx: AgentContext, claim: Claim) -> bool:
    """In a multi-node job a peer's interruption kills our workers too. Give that peer the time it needs
    to hand the job back (its grace period and final sync) before calling this a failure of the script."""
    deadline = time.monotonic() + ctx.config.training.stop_grace_s + 10
    while time.monotonic() < deadline:
        rec = get_job(ctx.clients, ctx.runtime, claim.job_id) or {}
        if rec.get("status") != "RUNNING" or rec.get("attempts") != claim.attempt:
            return True
        time.sleep(1)
    return False


def _wait(ctx: AgentContext, proc: JobProcess, max_runtime_s: int, lost: threading.Event) -> tuple[str, int]:
    deadline = time.monotonic() + max_runtime_s
    grace = ctx.config.training.stop_grace_s
    while True:
        code = proc.poll()
        if code is not None:
            proc.finish_output()
            return "exited", code
        if ctx.notice.is_set() or ctx.stop.is_set():
            log.warning("stopping the job for an interruption", extra={"detail": ctx.notice.detail or "agent stop"})
            return "interrupted", proc.stop(grace)
        if lost.is_set():
            return "lost", proc.stop(grace)
        if time.monotonic() > deadline:
            return "timeout", proc.stop(grace)
        time.sleep(0.1)


def _final_uploads(ctx: AgentContext, claim: Claim, ckpt: CheckpointSync | None, ship_logs: Any) -> None:
    try:
        if ckpt is not None:
            ckpt.sync()
    except AWS_ERRORS as exc:
        log.error("final checkpoint sync failed", extra={"job_id": claim.job_id, "error": str(exc)})
    try:
        ship_logs()
    except AWS_ERRORS as exc:
        log.error("final log upload failed", extra={"job_id": claim.job_id, "error": str(exc)})


def _settle_lost_race(ctx: AgentContext, claim: Claim, receipt: Receipt) -> str:
    """The job moved under us: cancelled, ended by a peer node, interrupted, or taken over by another
    agent that presumed us dead (then its receipt is the live one and ours is left alone)."""
    rec = get_job(ctx.clients, ctx.runtime, claim.job_id) or {}
    status = str(rec.get("status", "UNKNOWN"))
    if status in JOB_FINAL:
        ctx.message(receipt, delete=True)
    elif status in JOB_CLAIMABLE:
        ctx.message(receipt, visibility=0)
    log.info("job cancelled" if status == "CANCELLED" else "job moved on without us",
             extra={"job_id": claim.job_id, "status": status, "attempts": rec.get("attempts")})
    return status


def _claim_publisher(ctx: AgentContext, claim: Claim) -> bool:
    return update_job(ctx.clients, ctx.runtime, claim.job_id, {"publisher": ctx.identity.instance_id},
                      expect_status=["RUNNING"], expect_attempts=claim.attempt,
                      condition="attribute_not_exists(publisher)")


def _await_publisher(ctx: AgentContext, claim: Claim, receipt: Receipt) -> str:
    """A node that will not publish waits for the node that does. If no node saved a model, the job
    still succeeds (without one) once the others have had time to claim publishing."""
    started = time.monotonic()
    window = max(15.0, ctx.config.training.heartbeat_s)
    while True:
        rec = get_job(ctx.clients, ctx.runtime, claim.job_id) or {}
        if rec.get("status") != "RUNNING" or rec.get("attempts") != claim.attempt:
            return _settle_lost_race(ctx, claim, receipt)
        limit = ctx.config.training.stale_after_s if rec.get("publisher") else window
        if time.monotonic() - started > limit:
            break
        time.sleep(0.5)
    if rec.get("publisher") or not finish(ctx.clients, ctx.runtime, claim, "SUCCEEDED",
                                          {"metrics": rec.get("metrics", {})}, removes=("reason",)):
        return _settle_lost_race(ctx, claim, receipt)
    ctx.message(receipt, delete=True)
    log.info("job succeeded without a model", extra={"job_id": claim.job_id})
    return "SUCCEEDED"


def _conclude_success(ctx: AgentContext, claim: Claim, receipt: Receipt, code_sha: str,
                      inputs: list[dict[str, str]], metrics: dict[str, float]) -> str:
    if claim.spec.instance_count > 1:
        # torchrun's c10d rendezvous, not our slot, decides which node hosts global rank 0 (the one that
        # usually saves the model and prints metrics): the node that has a model publishes it.
        if metrics:
            heartbeat(ctx.clients, ctx.runtime, claim, metrics)
        if not (any(ctx.layout.model.iterdir()) and _claim_publisher(ctx, claim)):
            return _await_publisher(ctx, claim, receipt)
        metrics = {**(get_job(ctx.clients, ctx.runtime, claim.job_id) or {}).get("metrics", {}), **metrics}
    lineage = {"job_id": claim.job_id, "code_sha256": code_sha, "inputs": inputs,
               "hyperparameters": dict(claim.spec.hyperparameters), "metrics": metrics}
    try:
        model = publish_model(ctx.clients, ctx.runtime, ctx.layout.model, claim.spec.model_name, lineage)
    except (*AWS_ERRORS, OSError) as exc:
        return _conclude_failure(ctx, claim, receipt, f"publishing the model failed: {exc}")
    fields: dict[str, Any] = {"metrics": metrics, **({"model": model} if model else {})}
    if not finish(ctx.clients, ctx.runtime, claim, "SUCCEEDED", fields, removes=("reason",)):
        return _settle_lost_race(ctx, claim, receipt)
    ctx.message(receipt, delete=True)
    log.info("job succeeded", extra={"job_id": claim.job_id, "model": model, "metrics": metrics})
    return "SUCCEEDED"


def _conclude_failure(ctx: AgentContext, claim: Claim, receipt: Receipt, reason: str) -> str:
    if not finish(ctx.clients, ctx.runtime, claim, "FAILED", {"reason": reason[-4000:]}):
        return _settle_lost_race(ctx, claim, receipt)
    ctx.message(receipt, delete=True)
    log.warning("job failed", extra={"job_id": claim.job_id, "reason": reason.splitlines()[0]})
    return "FAILED"


def _conclude_interrupted(ctx: AgentContext, claim: Claim, receipt: Receipt) -> str:
    reason = ctx.notice.detail or "the agent was stopped"
    if not finish(ctx.clients, ctx.runtime, claim, "INTERRUPTED", {"reason": reason}):
        return _settle_lost_race(ctx, claim, receipt)
    ctx.requeue(claim.job_id, receipt)
    log.warning("job interrupted and handed back", extra={"job_id": claim.job_id, "attempt": claim.attempt})
    return "INTERRUPTED"
