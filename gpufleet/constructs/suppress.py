"""Inline checkov skips: each skip sits on the resource it excuses, with its reason.

checkov reads ``checkov:skip=<ID>:<reason>`` from any line of a resource's JSON block, so the skips
go into the ``//`` comment object cdktf already writes on every resource.
"""

from __future__ import annotations

from cdktf import TerraformResource


def skip_checks(resource: TerraformResource, reasons: dict[str, str]) -> None:
    """Record why ``resource`` is exempt from each checkov check in ``reasons`` (check id -> reason)."""
    for check_id, reason in sorted(reasons.items()):
        resource.add_override(f"//.checkov.{check_id}", f"checkov:skip={check_id}: {reason}")
