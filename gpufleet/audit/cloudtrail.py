"""CloudTrail events as calls: on real AWS, the same audit reads what CloudTrail recorded.

Give it a file of CloudTrail's JSON (``{"Records": [...]}``, as delivered to S3 or exported from event
history). Each event's caller is the role of ``userIdentity.arn`` (``assumed-role/<role>/<session>``);
events of other principals (users, AWS services) are skipped. Resources come from ``requestParameters``
by the call record's own rules, or from the event's ``resources`` when those rules find none; condition
keys too (a conditional header CloudTrail's ``requestParameters`` do not show is not seen: such a call is
reported denied, not silently allowed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpufleet.callrecord import Call, assumed_role, context_keys, iam_action, targets
from gpufleet.errors import UserInputError

# eventSource host → botocore's service name, where they differ
SOURCE_SERVICE = {"monitoring": "cloudwatch", "elasticloadbalancing": "elbv2"}


def _call(event: dict[str, Any]) -> Call | None:
    role = assumed_role(str((event.get("userIdentity") or {}).get("arn", "")))
    if role is None:
        return None
    host = str(event.get("eventSource", "")).split(".amazonaws.com")[0]
    service, operation, region = SOURCE_SERVICE.get(host, host), str(event.get("eventName")), event.get("awsRegion", "")
    params = event.get("requestParameters") or {}
    needs = targets(service, operation, params, region)
    listed = [r["ARN"] for r in event.get("resources") or [] if r.get("ARN")]
    if listed and all(res == "*" for _, res in needs):
        needs = [(iam_action(service, operation), r) for r in listed]
    status = 403 if str(event.get("errorCode", "")).endswith(("AccessDenied", "AccessDeniedException")) else 200
    return Call(role, None, service, operation, region, needs, status, context_keys(service, operation, params))


def read_cloudtrail(path: Path) -> Iterator[Call]:
    try:
        records = json.loads(path.read_text()).get("Records")
    except (OSError, ValueError, AttributeError) as exc:
        raise UserInputError([f"{path}: not a CloudTrail JSON file ({exc}) (export events as "
                              '{"Records": [...]}, e.g. a CloudTrail log file from S3)']) from None
    if not isinstance(records, list):
        raise UserInputError([f'{path}: no "Records" list (give a CloudTrail log file)'])
    for event in records:
        if isinstance(event, dict) and (call := _call(event)) is not None:
            yield call
