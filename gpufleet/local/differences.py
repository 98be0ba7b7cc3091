"""What local mode switches off, and why: the one list, printed on every local deploy.

Each entry is a feature the emulator (moto server 5.2.5) cannot run, or a teardown convenience.
Real-AWS synth always has all of them; tests/stacks assert both sides.
"""

from __future__ import annotations

from rich.console import Console

LOCAL_MODE_DIFFERENCES: list[tuple[str, str]] = [
    ("S3 buckets and the team image repository (ECR) are force-destroyable",
     "so `gpufleet local down` leaves nothing behind"),
    ("DynamoDB deletion protection is off", "so `gpufleet destroy` can remove the tables"),
    ("bucket policies leave out the TLS-only and team-scope Deny statements",
     "moto applies any Deny with a condition to every request; IAM role policies still scope each team, and "
     "`gpufleet audit --stacks <aws synth>` judges the recorded calls against the real ones"),
    ("GPU hosts boot moto's bundled Deep Learning AMI (owner 898082745236), not platform.gpu_ami",
     "moto holds no AMI baked by ami/"),
    ("launch templates ignore drift in tag_specifications",
     "moto echoes the template's own tags into them, which would show as a change on every plan"),
    ("the artifacts replication rule (with platform.dr_region) ignores drift",
     "moto stores it without delete-marker replication and the SSE-KMS source filter"),
    ("the job queue ignores drift in its redrive policy",
     "moto returns it re-serialized with spaces, which would show as a change on every plan"),
    ("EC2 instances are local agent processes, one per unit of each ASG's desired capacity",
     "moto runs no instances; lowering the capacity sends the agent SIGTERM, as a scale-in would"),
    ("a busy training agent's scale-in protection is a no-op, and scale-in stops the newest agents",
     "local instances are not moto instances, so moto ignores SetInstanceProtection for them"),
    ("each endpoint's ALB data plane is a local router on 127.0.0.1",
     "moto serves no traffic; the router forwards by the listener weights, checks /ping every 1 s and "
     "publishes the ALB metrics"),
    ("alarms are evaluated, and their step or simple scaling policies run, by the local cloud; p99 latency "
     "alarms are evaluated as Maximum", "moto evaluates no alarms, runs no policies and ignores extended statistics"),
    ("alarms and rollout bakes run on a time scale of 1/12 (a 60 s period lasts 5 s, a 240 s bake 20 s)",
     "so local rollouts stay quick while a bake still covers the alarms' whole detection window"),
    ("the local alarm evaluator counts a data point only if it arrives within two periods of its timestamp",
     "each tick reads only the periods that may still change, not every period of every alarm; the local "
     "publishers send no timestamps, so the emulator stamps each point on arrival"),
    ("target-tracking policies do not run locally", "moto does not run them and the local cloud does not emulate them"),
    ("SQS queue-depth metrics are published by the local cloud every 2.5 s (twice per scaled minute)",
     "moto publishes no SQS metrics"),
    ("container jobs and endpoints run images already on the machine (local podman images; one named without "
     "a registry is localhost/<repo>:<tag>); nothing is pulled from the team's ECR repository",
     "moto's ECR stores repositories but serves no registry to pull from"),
    ("S3 buckets have no lifecycle configuration (no expiry, no multipart-upload cleanup)",
     "moto never runs lifecycle rules, and the AWS provider spends a fixed 55 s on each one (10 identical "
     "reads 5 s apart, as on real AWS)"),
    ("an SDK retry of a request the emulator already answered (the same amz-sdk-invocation-id) gets the first "
     "answer again", "the client lost that answer on a loaded machine; moto would run the write twice and fail "
     "the repeat (AlreadyExists, Duplicate, NotFound), which real AWS mostly makes harmless"),
    ("a repeated CreateLaunchTemplate with the same ClientToken returns the first template, DeleteLaunchTemplate "
     "of a gone ID answers InvalidLaunchTemplateId.NotFound, DeleteTable of a gone table names it in its "
     "ResourceNotFoundException, and RemoveRoleFromInstanceProfile of a role no longer in it answers NoSuchEntity",
     "real EC2, DynamoDB and IAM answer so, and the provider treats each as done; moto 5.2.5 fails them "
     "(AlreadyExists, InvalidLaunchTemplateName.NotFoundException, a ResourceNotFoundException without the "
     "table, an internal error)"),
    ("team commands do not check that they run as the team's operator role",
     "local credentials are the emulator's fixed ones, not a role's, and local bucket policies deny no principal; "
     "the call record still counts the CLI's calls as the operator role's"),
    ("jobs run as the local agent's own user, with no IMDS firewall rule",
     "local agents stand in for hosts on one machine and switch no users; job code still gets only the job "
     "role's credentials"),
]


def print_local_differences(console: Console) -> None:
    console.print("[bold]local mode[/] (emulated AWS) differs from real AWS in exactly these ways:")
    for feature, why in LOCAL_MODE_DIFFERENCES:
        console.print(f"  • {feature}: {why}")
