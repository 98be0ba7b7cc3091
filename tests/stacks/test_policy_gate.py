"""checkov (its own virtualenv: scripts/install-checkov, or $CHECKOV_BIN) finds zero failed checks on every
synthesized stack; each skip is inline with its reason; the custom launch-template EBS check really fails.
The plan-JSON (terraform_plan) gate runs in test_e2e_local.py, on plans of deployed stacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies import gate
from tests.stacks.conftest import Synth


def test_every_stack_passes_checkov_with_only_reasoned_inline_skips(aws_synth: tuple[Path, Synth]) -> None:
    stacks_dir, stacks = aws_synth
    total = gate.GateResult()
    for name in stacks:
        total.merge(gate.check_stack(stacks_dir / name))
    assert total.failed == [], "\n".join(f"{c} {r}: {n}" for c, r, n in total.failed)
    assert total.passed > 500
    assert all(reason.strip() for _, _, reason in total.skipped)
    assert {"CKV_GPUFLEET_1", "CKV_AWS_79"} <= total.passed_ids  # EBS encryption (custom), IMDSv2


def test_an_internet_facing_endpoint_passes_checkov_with_waf_tls_and_no_internal_excuses(
        internet_facing_synth: tuple[Path, Synth]) -> None:
    stacks_dir, _ = internet_facing_synth
    result = gate.check_stack(stacks_dir / "team-web")
    assert result.failed == [], "\n".join(f"{c} {r}: {n}" for c, r, n in result.failed)
    skipped = {check for check, _, _ in result.skipped}
    assert not skipped & {"CKV2_AWS_28", "CKV2_AWS_76", "CKV_AWS_2", "CKV_AWS_103", "CKV2_AWS_20", "CKV_AWS_260"}
    assert {"CKV_AWS_192"} <= result.passed_ids   # WAF with the Log4j (known bad inputs) managed rules


def test_custom_check_fails_a_launch_template_with_an_unencrypted_volume(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "cdk.tf.json").write_text(json.dumps({"resource": {"aws_launch_template": {"lt": {
        "name": "plain", "metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 1},
        "block_device_mappings": [{"device_name": "/dev/xvda", "ebs": {"volume_size": 100, "encrypted": "false"}}],
    }}}}))
    result = gate.check_stack(stack)
    assert ("CKV_GPUFLEET_1", "lt") in {(c, r) for c, r, _ in result.failed}


def test_a_skip_without_a_reason_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "cdk.tf.json").write_text(json.dumps({"resource": {"aws_lb": {"alb": {
        "//": {"checkov": {"CKV_AWS_150": "checkov:skip=CKV_AWS_150"}}}}}}))
    with pytest.raises(ValueError, match="without a reason"):
        gate.inline_skips(tmp_path)
