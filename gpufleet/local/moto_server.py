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
  found``, which fails the destroy;
- ``RemoveRoleFromInstanceProfile`` of a role already removed is ``NoSuchEntity`` on real IAM, which the
  provider treats as done; moto fails with an internal error (HTTP 500), which the SDK retries for minutes.

The first three were seen as one-in-many flakes (a fresh local up failing on AlreadyExists, a destroy failing on
NotFound, a team destroy failing on DeleteTable's ResourceNotFoundException). Each fix is listed in
``differences.py``. The last was found by destroying a team stack through a proxy that loses the first
answer to every delete (the exploration behind ``tests/faults/test_retried_writes.py``).

Beyond these, any SDK retry of a request the emulator already answered gets that answer again
(``gpufleet.local.replay``): the fixes above keep moto's answers to a genuine repeat as real AWS gives them.

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
from moto.iam.exceptions import NoSuchEntity
from moto.iam.models import IAMBackend

from gpufleet.local.replay import ReplayRetries, WsgiApp

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


def _patch_remove_role_not_in_profile() -> None:
    original = IAMBackend.remove_role_from_instance_profile

    def remove_role_from_instance_profile(self: IAMBackend, profile_name: str, role_name: str) -> None:
        profile = self.get_instance_profile(profile_name)
        if role_name not in {role.name for role in profile.roles}:
            raise NoSuchEntity(f"The role {role_name} is not in instance profile {profile_name}.")
        original(self, profile_name, role_name)

    IAMBackend.remove_role_from_instance_profile = remove_role_from_instance_profile  # type: ignore[method-assign]


def apply_retry_safety() -> None:
    """Make moto answer repeated launch-template, table and instance-profile writes as real AWS does."""
    _patch_create_idempotent()
    _patch_delete_by_id_not_found()
    _patch_delete_table_not_found()
    _patch_remove_role_not_in_profile()


def _serve_with_replay() -> None:
    """Wrap the app moto's ``main`` serves in :class:`~gpufleet.local.replay.ReplayRetries`."""
    import moto.server

    run_simple = moto.server.run_simple

    def run_replaying(host: str, port: int, app: WsgiApp, **options: Any) -> None:
        run_simple(host, port, ReplayRetries(app), **options)

    moto.server.run_simple = run_replaying  # type: ignore[assignment]


def main() -> None:
    from moto.server import main as moto_main

    apply_retry_safety()
    _serve_with_replay()
    moto_main()


if __name__ == "__main__":
    main()
