"""The emulator's entry point: moto's own server, with the retry-safety real AWS has and moto 5.2.5 lacks.

The AWS provider's SDK retries a request whose response it did not get (a reset connection, a timeout under
load), so a write can reach the server twice. Real AWS makes that harmless and moto does not:

- ``CreateLaunchTemplate`` carries a ``ClientToken``; real EC2 answers a repeat with the template it already
  made, moto fails it with ``InvalidLaunchTemplateName.AlreadyExistsException``;
- ``DeleteLaunchTemplate`` by an ID that is gone is ``InvalidLaunchTemplateId.NotFound`` on real EC2, which
  the provider treats as already deleted; moto answers ``InvalidLaunchTemplateName.NotFoundException``, which
  fails the destroy;
- ``DeleteTable`` of a table that is gone answers ``Requested resource not found: Table: <name> not found`` on
  real DynamoDB, the message the provider treats as already deleted; moto says only ``Requested resource not
  found``, which fails the destroy.

All three were seen as one-in-many flakes (a fresh local up failing on AlreadyExists, a destroy failing on
NotFound, a team destroy failing on DeleteTable's ResourceNotFoundException). Each fix is listed in
``differences.py``.

Run as ``python -m gpufleet.local.moto_server -H HOST -p PORT`` (moto's own arguments).
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.dynamodb.exceptions import ResourceNotFoundException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.ec2.exceptions import InvalidLaunchTemplateIdNotFound
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
from moto.ec2.responses.launch_templates import LaunchTemplates

_TOKENS_LOCK = threading.Lock()  # moto's server answers on threads; a retry can race its own original


def _created(response: LaunchTemplates, template: LaunchTemplate) -> ActionResult:
    """The answer ``CreateLaunchTemplate`` gives for ``template`` (moto's own shape)."""
    version = template.default_version()
    return ActionResult({"LaunchTemplate": {
        "CreateTime": version.create_time,
        "CreatedBy": f"arn:{response.partition}:iam::{response.current_account}:root",
        "DefaultVersionNumber": template.default_version_number,
        "LatestVersionNumber": version.number,
        "LaunchTemplateId": template.id,
        "LaunchTemplateName": template.name,
        "Tags": template.tags,
    }})


def _patch_create_idempotent() -> None:
    original = LaunchTemplates.create_launch_template

    def create_launch_template(self: LaunchTemplates) -> ActionResult:
        token = self._get_param("ClientToken")
        if not token:
            return original(self)
        backend: Any = self.ec2_backend
        with _TOKENS_LOCK:
            tokens: dict[str, str] = backend.__dict__.setdefault("gpufleet_client_tokens", {})
            known = backend.launch_templates.get(tokens.get(token, ""))
            if known is not None:
                return _created(self, known)
            result = original(self)
            tokens[token] = backend.launch_template_name_to_ids[self._get_param("LaunchTemplateName")]
            return result

    LaunchTemplates.create_launch_template = create_launch_template  # type: ignore[method-assign]


def _patch_delete_by_id_not_found() -> None:
    original = LaunchTemplateBackend.delete_launch_template

    def delete_launch_template(self: LaunchTemplateBackend, name: str, tid: str | None) -> LaunchTemplate:
        if not name and tid and tid not in self.launch_templates:
            raise InvalidLaunchTemplateIdNotFound(tid)
        return original(self, name, tid)

    LaunchTemplateBackend.delete_launch_template = delete_launch_template  # type: ignore[method-assign]


def _patch_delete_table_not_found() -> None:
    original = DynamoDBBackend.delete_table

    def delete_table(self: DynamoDBBackend, name: str) -> Table:
        try:
            self.get_table(name)  # by name or ARN, as moto's own lookup
        except ResourceNotFoundException:
            raise ResourceNotFoundException(table_name=name) from None
        return original(self, name)

    DynamoDBBackend.delete_table = delete_table  # type: ignore[method-assign]


def apply_retry_safety() -> None:
    """Make moto answer repeated launch-template and table deletes as real EC2 and DynamoDB do."""
    _patch_create_idempotent()
    _patch_delete_by_id_not_found()
    _patch_delete_table_not_found()


def main() -> None:
    from moto.server import main as moto_main

    apply_retry_safety()
    moto_main()


if __name__ == "__main__":
    main()
