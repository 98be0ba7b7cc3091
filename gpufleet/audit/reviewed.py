"""Granted actions that no recorded call uses, kept on purpose: role kind → action → why it stays.

``gpufleet audit`` lists every unused grant; those here show their reason instead of asking for removal.
Add an entry only with a reason a reviewer can check (the code path that makes the call); remove the
grant from the stacks otherwise.
"""

from __future__ import annotations

MULTIPART_ABORT = ("boto3's transfer manager aborts a multipart upload that fails (uploads over 8 MB: checkpoints, "
                   "model tarballs)")
ELB_READS = ("real-AWS rollouts read the listener and its targets' health from ELB (rollout/fleet.py); in local "
             "mode the local router answers instead")
JOB_LOGS = "`gpufleet job logs` lists and reads the logs bucket (jobs/ops.py job_logs)"
CAPTURE = "data capture (agent/serving/capture.py) writes the capture bucket when an endpoint turns capture on"

DYNAMODB_KEY = ("DynamoDB uses the table's customer-managed key on the caller's behalf (constructs/tables.py, "
                "scoped by kms:ViaService); the recorder sees the DynamoDB call, not DynamoDB's own KMS requests")
IMAGE_PULL = ("container jobs and endpoints pull the team's images (agent/training/container.py); "
              "tests/training/test_container_jobs.py runs one, the demo does not")
IMAGE_PUSH = "operators push the team's images to its ECR repository (README, Bring your own container)"
PULL_ACTIONS = ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability")
# As constructs/images.py grants them (not imported: the audit runs without cdktf).
PUSH_ACTIONS = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
                "ecr:DescribeImages", "ecr:DescribeImageScanFindings")
_KEY_VIA_DYNAMODB = {"kms:DescribeKey": DYNAMODB_KEY, "kms:Encrypt": DYNAMODB_KEY}

REVIEWED_UNUSED: dict[str, dict[str, str]] = {
    "training": {
        "autoscaling:CompleteLifecycleAction": "sent when the host terminates (agent/training/spot.py); the spot "
                                               "handover test records it",
        "s3:AbortMultipartUpload": MULTIPART_ABORT,
        "sqs:SendMessage": "re-queues a job its spot notice interrupted (agent/training/runner.py _requeue); the "
                           "spot handover test records it",
        "sqs:ChangeMessageVisibility": "heartbeats extend a running job's message while it outlives the queue's "
                                       "visibility timeout (agent/training/runner.py); the demo's job is shorter",
        **_KEY_VIA_DYNAMODB,
        **dict.fromkeys(PULL_ACTIONS, IMAGE_PULL),
    },
    "serving": {
        "autoscaling:SetInstanceHealth": "reported when the host's GPU fails (agent/serving/telemetry.py); "
                                         "tests/serving/test_gpu_telemetry.py drives it",
        "s3:PutObject": CAPTURE,
        "kms:GenerateDataKey": CAPTURE + " (SSE-KMS)",
        **_KEY_VIA_DYNAMODB,
        **dict.fromkeys(PULL_ACTIONS, IMAGE_PULL),
    },
    "operator": {
        "elasticloadbalancing:DescribeListeners": ELB_READS,
        "elasticloadbalancing:DescribeTargetHealth": ELB_READS,
        "elasticloadbalancing:DescribeRules": "rollouts and `gpufleet endpoint status` read the path rule's weights "
                                              "(rollout/fleet.py read_weights); the demo e2e's CLI steps record it",
        "dynamodb:Query": "`gpufleet model list NAME` queries one model's versions (registry/models.py); the demo "
                          "e2e's CLI steps record it",
        "s3:GetObject": JOB_LOGS,
        "s3:ListBucket": JOB_LOGS,
        "s3:AbortMultipartUpload": MULTIPART_ABORT + "; `gpufleet model register` uploads a tarball "
                                   "(registry/bring.py)",
        **_KEY_VIA_DYNAMODB,
        **dict.fromkeys(PUSH_ACTIONS + PULL_ACTIONS, IMAGE_PUSH),
    },
}
