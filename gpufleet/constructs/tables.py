"""Table: an on-demand DynamoDB table with point-in-time recovery and SSE under a customer key."""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from gpufleet.constructs.policy import Grantee, Statement, sid
from gpufleet.providers import DynamodbTable

READ_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan",
                "dynamodb:DescribeTable", "dynamodb:ConditionCheckItem")
WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")


class Table(Construct):
    """``keys`` is ``[(attribute, type, HASH|RANGE)]``, hash key first."""

    def __init__(self, scope: Construct, table_id: str, *, name: str, keys: Sequence[tuple[str, str, str]],
                 key_arn: str, deletion_protection: bool = True) -> None:
        super().__init__(scope, table_id)
        hash_key = next(a for a, _, kind in keys if kind == "HASH")
        range_key = next((a for a, _, kind in keys if kind == "RANGE"), None)
        self.table = DynamodbTable(
            self, "table", name=name, billing_mode="PAY_PER_REQUEST", hash_key=hash_key, range_key=range_key,
            attribute=[{"name": a, "type": t} for a, t, _ in keys],
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": key_arn},
            deletion_protection_enabled=deletion_protection)
        self.name, self.arn = name, self.table.arn

    def grant_read(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("Read", label), READ_ACTIONS, (self.arn, f"{self.arn}/index/*")))

    def grant_read_write(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("ReadWrite", label), READ_ACTIONS + WRITE_ACTIONS,
                                        (self.arn, f"{self.arn}/index/*")))
