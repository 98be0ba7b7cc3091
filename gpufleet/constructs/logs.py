"""JobLogGroup: a CloudWatch Logs group for training job logs, encrypted with the team key and kept a year."""

from __future__ import annotations

from constructs import Construct

from gpufleet.constructs.keys import EncryptionKey
from gpufleet.constructs.policy import Grantee, Statement, sid
from gpufleet.providers import CloudwatchLogGroup

WRITE_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")


class JobLogGroup(Construct):
    """The group is created here, so hosts need no ``logs:CreateLogGroup``; each job attempt writes its own
    stream. ``arn_prefix`` is ``arn:<partition>:logs:<region>:<account>`` (grants name the group before it
    exists, as bucket policies name roles)."""

    def __init__(self, scope: Construct, group_id: str, *, name: str, key: EncryptionKey, region: str,
                 arn_prefix: str, retention_days: int = 365) -> None:
        super().__init__(scope, group_id)
        self.name = name
        self.arn = f"{arn_prefix}:log-group:{name}"
        key.allow_log_group(region, self.arn, group_id)
        CloudwatchLogGroup(self, "group", name=name, kms_key_id=key.arn, retention_in_days=retention_days)

    def grant_write(self, grantee: Grantee, label: str) -> None:
        """Create streams in the group and put events to them (what ``LogShipper`` calls)."""
        grantee.add_to_policy(Statement(sid("WriteLogs", label), WRITE_ACTIONS,
                                        (self.arn, f"{self.arn}:log-stream:*")))
