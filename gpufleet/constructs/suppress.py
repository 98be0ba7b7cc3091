"""Inline checkov skips: each skip sits on the resource it excuses, with its reason.

The skips go into the ``//`` comment object cdktf writes on every block of ``cdk.tf.json``, as
``checkov:skip=<ID>: <reason>``; ``policies/gate.py`` honours exactly those.
"""

from __future__ import annotations

from cdktf import TerraformDataSource, TerraformElement, TerraformStack


def skip_checks(element: TerraformElement, reasons: dict[str, str]) -> None:
    """Record why ``element`` is exempt from each checkov check in ``reasons`` (check id -> reason)."""
    for check_id, reason in sorted(reasons.items()):
        text = f"checkov:skip={check_id}: {reason}"
        if isinstance(element, TerraformDataSource):
            # Element-level overrides of data sources are dropped at synth; the stack's are not.
            stack = TerraformStack.of(element)
            address = f"data.{element.terraform_resource_type}.{stack.get_logical_id(element)}"
            stack.add_override(f"{address}.//.checkov.{check_id}", text)
        else:
            element.add_override(f"//.checkov.{check_id}", text)
