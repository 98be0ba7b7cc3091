"""Table: an on-demand DynamoDB table with point-in-time recovery and SSE under a customer key."""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from gpufleet.constructs.policy import Condition, Grantee, Statement, sid
from gpufleet.providers import DynamodbTable

# The item calls gpufleet makes; none batches, deletes items, transacts or describes a table.
GET_ACTIONS = ("dynamodb:GetItem",)
READ_ACTIONS = (*GET_ACTIONS, "dynamodb:Query")
SCAN_ACTIONS = ("dynamodb:Scan",)
WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
# With a customer-managed key, DynamoDB uses the key on each caller's behalf and checks the caller may: the
# statement AWS's DynamoDB docs give for table users, less CreateGrant (only the table's creator needs it).
# kms:ViaService holds it to requests DynamoDB makes for this region's tables.
KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")


class Table(Construct):
    """``keys`` is ``[(attribute, type, HASH|RANGE)]``, hash key first."""

    def __init__(self, scope: Construct, table_id: str, *, name: str, keys: Sequence[tuple[str, str, str]],
                 key_arn: str, region: str, deletion_protection: bool = True) -> None:
        super().__init__(scope, table_id)
        hash_key = next(a for a, _, kind in keys if kind == "HASH")
        range_key = next((a for a, _, kind in keys if kind == "RANGE"), None)
        self.table = DynamodbTable(
            self, "table", name=name, billing_mode="PAY_PER_REQUEST", hash_key=hash_key, range_key=range_key,
            attribute=[{"name": a, "type": t} for a, t, _ in keys],
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": key_arn},
            deletion_protection_enabled=deletion_protection)
        self.name, self.arn, self.key_arn, self.region = name, self.table.arn, key_arn, region

    def _grant(self, grantee: Grantee, statement_id: str, actions: tuple[str, ...], scan: bool) -> None:
        """The item actions, and the table key as DynamoDB uses it for the grantee (CDK's grants do the same)."""
        grantee.add_to_policy(Statement(statement_id, actions + (SCAN_ACTIONS if scan else ()),
                                        (self.arn, f"{self.arn}/index/*")))
        grantee.add_to_policy(Statement(
            statement_id + "Key", KEY_ACTIONS, (self.key_arn,),
            conditions=(Condition("StringEquals", "kms:ViaService", (f"dynamodb.{self.region}.amazonaws.com",)),)))

    def grant_get(self, grantee: Grantee, label: str) -> None:
        """Read single items by key (a host that follows known records)."""
        self._grant(grantee, sid("Get", label), GET_ACTIONS, scan=False)

    def grant_read(self, grantee: Grantee, label: str, *, scan: bool = False) -> None:
        """Get and query items; ``scan`` also reads the whole table (listings, exports)."""
        self._grant(grantee, sid("Read", label), READ_ACTIONS, scan)

    def grant_read_write(self, grantee: Grantee, label: str, *, scan: bool = False) -> None:
        """Get, query, put and update items (conditional writes, never deletes); ``scan`` as in ``grant_read``."""
        self._grant(grantee, sid("ReadWrite", label), READ_ACTIONS + WRITE_ACTIONS, scan)
