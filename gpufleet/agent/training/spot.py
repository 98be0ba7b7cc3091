"""Spot and scale-in notices from IMDS, scale-in protection while a job runs, and completing the ASG
lifecycle action after a drain.

moto has neither the IMDS paths ``spot/instance-action`` and ``autoscaling/target-lifecycle-state``
nor ``complete_lifecycle_action`` (HTTP 500): tests serve the paths from a small fake IMDS, and a failed
completion is logged and tolerated (the ASG then terminates the instance when the hook times out).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager

from gpufleet.agent.identity import ImdsClient
from gpufleet.aws import AWS_ERRORS, AwsClients

log = logging.getLogger("gpufleet.agent.spot")
SPOT_PATH = "meta-data/spot/instance-action"
LIFECYCLE_PATH = "meta-data/autoscaling/target-lifecycle-state"


class Notice:
    """Set once: the host is going away (spot or scale-in) and the running job must be handed back."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.kind = ""
        self.detail = ""

    def set(self, kind: str, detail: str) -> None:
        if not self.event.is_set():
            self.kind, self.detail = kind, detail
            self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


def check_imds(imds: ImdsClient) -> tuple[str, str] | None:
    """(kind, detail) when IMDS announces this host's end; None otherwise."""
    action = imds.get(SPOT_PATH)
    if action:
        return "spot", f"spot instance-action {action.strip()}"
    state = imds.get(LIFECYCLE_PATH)
    if state and state.strip() not in ("InService", "Pending", "Warmed:Running"):
        return "scale-in", f"target-lifecycle-state {state.strip()}"
    return None


class SpotWatcher(threading.Thread):
    def __init__(self, imds: ImdsClient, interval_s: float, notice: Notice) -> None:
        super().__init__(name="spot-watcher", daemon=True)
        self.imds, self.interval_s, self.notice = imds, interval_s, notice
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self.notice.is_set() and not self._stop_event.wait(self.interval_s):
            try:
                found = check_imds(self.imds)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("IMDS unreachable", extra={"error": str(exc)})
                continue
            if found:
                log.warning("host is going away", extra={"kind": found[0], "detail": found[1]})
                self.notice.set(*found)

    def stop(self) -> None:
        self._stop_event.set()


def complete_lifecycle_action(clients: AwsClients, asg: str, hook: str, instance_id: str) -> bool:
    """Tell the ASG the drain is done. Never raises: the hook's timeout is the fallback."""
    try:
        clients.client("autoscaling").complete_lifecycle_action(
            LifecycleHookName=hook, AutoScalingGroupName=asg, LifecycleActionResult="CONTINUE",
            InstanceId=instance_id)
    except Exception as exc:   # moto answers HTML 500s that botocore cannot even parse
        log.warning("could not complete the lifecycle action", extra={"asg": asg, "hook": hook, "error": str(exc)})
        return False
    log.info("lifecycle action completed", extra={"asg": asg, "hook": hook})
    return True


def set_scale_in_protection(clients: AwsClients, asg: str, instance_id: str, protected: bool) -> bool:
    """Never raises: an unprotected busy host is still drained through the checkpoint hook."""
    try:
        clients.client("autoscaling").set_instance_protection(
            InstanceIds=[instance_id], AutoScalingGroupName=asg, ProtectedFromScaleIn=protected)
    except AWS_ERRORS as exc:
        log.warning("could not change scale-in protection",
                    extra={"asg": asg, "protected": protected, "error": str(exc)})
        return False
    return True


@contextmanager
def scale_in_protection(clients: AwsClients, asg: str, instance_id: str) -> Iterator[None]:
    """While a job runs the ASG does not pick this host when it scales in (a lower desired capacity may
    pick any host; a checkpointed hand-over costs the job its progress since the last checkpoint)."""
    protected = set_scale_in_protection(clients, asg, instance_id, True)
    try:
        yield
    finally:
        if protected:
            set_scale_in_protection(clients, asg, instance_id, False)
