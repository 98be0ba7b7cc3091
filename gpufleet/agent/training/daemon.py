"""The training agent's main loop: receive from the team's priority queues (high first, with a starvation
guard: see ``queues``), claim, run, repeat; hand the job back on a spot or scale-in notice; stop cleanly
on SIGTERM. Imports no torch: the job's own interpreter does.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from gpufleet.agent.health import start_health_server
from gpufleet.agent.identity import imds_for, resolve_identity
from gpufleet.agent.logs import configure_logging
from gpufleet.agent.training.claim import Claim, claim_job
from gpufleet.agent.training.isolation import open_work_root, require_imds_block, resolve_job_user
from gpufleet.agent.training.layout import Layout
from gpufleet.agent.training.process import become_subreaper
from gpufleet.agent.training.queues import PriorityReceiver, Received
from gpufleet.agent.training.runner import AgentContext, run_claimed_job
from gpufleet.agent.training.spot import Notice, SpotWatcher, complete_lifecycle_action, scale_in_protection
from gpufleet.aws import AWS_ERRORS, AwsClients
from gpufleet.errors import RuntimeFailure
from gpufleet.schema import CHECKPOINT_HOOK_SUFFIX
from gpufleet.schema.agent_config import AgentConfig

log = logging.getLogger("gpufleet.agent.training")
UNHEALTHY_AFTER_POLL_FAILURES = 3


def handle_message(ctx: AgentContext, message: Received) -> str:
    """Decide what one queue message means and act on it; returns what was done."""
    receipt = message.receipt
    try:
        job_id = str(json.loads(message.body)["job_id"])
    except (ValueError, KeyError, TypeError):
        # Poison: visible again at once, so the queue's redrive moves it to the DLQ after max receives.
        log.warning("unreadable queue message", extra={"message_id": message.message_id,
                                                         "priority": receipt.priority})
        ctx.message(receipt, visibility=0)
        return "poison"
    decision = claim_job(ctx.clients, ctx.runtime, job_id, ctx.identity, ctx.config.training,
                         message.receives, ctx.max_receives)
    if isinstance(decision, Claim):
        with scale_in_protection(ctx.clients, ctx.runtime.training.asg, ctx.identity.instance_id):
            return run_claimed_job(ctx, decision, receipt)
    log.info("message skipped", extra={"job_id": job_id, "action": decision.action, "reason": decision.reason})
    if decision.action == "delete":
        ctx.message(receipt, delete=True)
    elif decision.action == "dead-letter":
        ctx.dead_letter(receipt, message.body)
    elif decision.action == "defer":
        ctx.requeue(job_id, receipt, decision.delay_s)
    else:
        ctx.message(receipt, visibility=decision.delay_s)
    return decision.action


def serve_queue(ctx: AgentContext) -> None:
    """Take jobs until stopped or told the host is going away. Whatever a job does, the loop goes on."""
    settings = ctx.config.training
    receiver = PriorityReceiver(ctx.clients.sqs, ctx.runtime, settings,
                                interrupted=lambda: ctx.stop.is_set() or ctx.notice.is_set())
    while not ctx.stop.is_set() and not ctx.notice.is_set():
        try:
            message = receiver.receive()
        except AWS_ERRORS as exc:
            ctx.poll_failures += 1
            log.error("queue poll failed", extra={"error": str(exc), "consecutive": ctx.poll_failures})
            ctx.stop.wait(min(5.0, settings.poll_wait_s))
            continue
        ctx.poll_failures = 0
        if message is None:
            continue
        if ctx.stop.is_set() or ctx.notice.is_set():
            ctx.message(message.receipt, visibility=0)   # not ours to start any more
            continue
        try:
            handle_message(ctx, message)
        except Exception:
            log.exception("job handling failed; the agent carries on")


def queue_max_receives(clients: AwsClients, queue_url: str) -> int | None:
    """The queue's redrive maxReceiveCount (None without a redrive policy, or unreadable now: then only
    ``max_attempts`` bounds a job's attempts)."""
    try:
        attrs = clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
        return int(json.loads(attrs["Attributes"]["RedrivePolicy"])["maxReceiveCount"])
    except (*AWS_ERRORS, KeyError, ValueError, TypeError) as exc:
        log.warning("could not read the queue's redrive policy", extra={"error": str(exc)})
        return None


def _health(ctx: AgentContext) -> dict[str, Any]:
    return {"healthy": ctx.poll_failures < UNHEALTHY_AFTER_POLL_FAILURES, "role": "training",
            "instance_id": ctx.identity.instance_id, "team": ctx.identity.team, "job": ctx.current_job,
            "jobs_run": ctx.jobs_run,
            "draining": ctx.notice.is_set(), "notice": ctx.notice.detail or None}


def run(config: AgentConfig, stop: threading.Event) -> int:
    imds = imds_for(config)
    identity = resolve_identity(config, imds)
    configure_logging({"instance_id": identity.instance_id, "team": identity.team, "role": "training"})
    job_user = resolve_job_user(config.training.job_user, local=config.local is not None)
    if config.local is None:
        require_imds_block(job_user)   # a real host: job code must not reach the host role's credentials
    open_work_root(Path(config.work_root), job_user)   # the job user reaches its folders, nothing else there
    ctx = AgentContext(config=config, clients=AwsClients.for_agent(config), identity=identity,
                       layout=Layout(Path(config.work_root)), notice=Notice(), stop=stop,
                       subreaper=threading.current_thread() is threading.main_thread() and become_subreaper(),
                       job_user=job_user)
    # The priority queues share one DLQ with the same redrive policy: normal's stands for all.
    ctx.max_receives = queue_max_receives(ctx.clients, ctx.runtime.queue_url)
    try:
        server = start_health_server(config.health_port, lambda: _health(ctx)) if config.health_port else None
    except OSError as exc:
        raise RuntimeFailure("health server", f"port {config.health_port}: {exc.strerror}",
                             "free the port or set health_port in the agent config") from None
    watcher = SpotWatcher(imds, config.training.spot_poll_s, ctx.notice) if imds else None
    if watcher:
        watcher.start()
    log.info("training agent started", extra={"queues": config.team.priority_queues, "work_root": config.work_root})
    try:
        serve_queue(ctx)
        if ctx.notice.is_set() and not stop.is_set():
            hook = config.training.lifecycle_hook or f"{config.team.training.asg}{CHECKPOINT_HOOK_SUFFIX}"
            complete_lifecycle_action(ctx.clients, config.team.training.asg, hook,
                                      identity.instance_id)
            log.info("drained: waiting to be stopped", extra={"notice": ctx.notice.detail})
            stop.wait()
    finally:
        if watcher:
            watcher.stop()
        if server:
            server.shutdown()
            server.server_close()
        log.info("training agent stopped", extra={"jobs_run": ctx.jobs_run})
    return 0
