"""The real-AWS stacks' resource policies, as the audit judges them (gpufleet.audit.evaluate.bucket_denial and
key_denial): each team's roles pass their own buckets' Deny guards and every other role is denied object
access; each team key's policy lets the account's IAM grant its use. moto applies no bucket policy gpufleet
writes (the local synth leaves them out) and no key policy, so this is their proof."""

from __future__ import annotations

import json
from pathlib import Path

from gpufleet.audit.evaluate import Request, bucket_denial, key_denial
from gpufleet.audit.stacks import Stacks, load_stacks
from tests.stacks.conftest import Synth

ACCOUNT = "123456789012"
KINDS = ("training", "serving", "operator", "job", "replication")
OUTSIDE = "denied by the bucket policy (DenyObjectAccessOutsideTeam)"


def _role_arn(platform: str, team: str, kind: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{platform}-{team}-{kind}"


def _stacks(aws_synth: tuple[Path, Synth]) -> Stacks:
    return load_stacks([aws_synth[0].parent])


def test_each_teams_roles_and_only_they_pass_its_buckets_policies(aws_synth: tuple[Path, Synth]) -> None:
    policies = _stacks(aws_synth).bucket_policies
    admin = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    for team, other in (("vision", "nlp"), ("nlp", "vision")):
        buckets = [b for b in policies if b.startswith(f"acme-{team}-")]
        assert len(buckets) == 6, buckets   # data, artifacts, checkpoints, capture, logs, and the DR replica
        for bucket in buckets:
            # The replication role reads only the bucket it replicates; S3 writes the replica with
            # s3:Replicate*, which the guard does not name.
            kinds = [k for k in KINDS if k != "replication" or bucket.endswith("-artifacts")]
            for action in ("s3:GetObject", "s3:PutObject"):
                request = Request(action, f"arn:aws:s3:::{bucket}/models/m/1/model.tar.gz")
                for kind in kinds:
                    assert bucket_denial(policies[bucket], request, _role_arn("acme", team, kind)) is None, \
                        (bucket, action, kind)
                outsiders = [*(_role_arn("acme", other, k) for k in KINDS), *(_role_arn("acme", team, k)
                                                                             for k in KINDS if k not in kinds)]
                for outsider in [*outsiders, admin]:
                    assert bucket_denial(policies[bucket], request, outsider) == OUTSIDE, \
                        (bucket, action, outsider)
        replica = f"acme-{team}-artifacts-dr"
        replicate = Request("s3:ReplicateObject", f"arn:aws:s3:::{replica}/models/m/1/model.tar.gz")
        assert bucket_denial(policies[replica], replicate, _role_arn("acme", team, "replication")) is None


def test_plain_http_is_denied_to_every_principal_on_every_bucket(aws_synth: tuple[Path, Synth]) -> None:
    policies = _stacks(aws_synth).bucket_policies
    assert len(policies) == 13   # 6 a team, and the platform log bucket
    operator = _role_arn("acme", "vision", "operator")
    for bucket, policy in policies.items():
        over_http = Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", (("aws:SecureTransport", "false"),))
        assert bucket_denial(policy, over_http, operator) == "denied by the bucket policy (DenyInsecureTransport)"


def _state(stacks_dir: Path, into: Path) -> Path:
    """State files as a deploy leaves them, as far as the audit reads them: each key's ARN (AWS assigns its
    id) and the account, so key policies resolve to concrete ARNs."""
    into.mkdir()
    for doc_path in stacks_dir.glob("*/cdk.tf.json"):
        keys = json.loads(doc_path.read_text())["resource"].get("aws_kms_key", {})
        resources = [{"mode": "managed", "type": "aws_kms_key", "name": rid, "instances": [{"attributes": {
            "arn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{doc_path.parent.name}-{rid}"}}]} for rid in keys]
        resources.append({"mode": "data", "type": "aws_caller_identity", "name": "account",
                          "instances": [{"attributes": {"account_id": ACCOUNT}}]})
        (into / f"{doc_path.parent.name}.tfstate").write_text(json.dumps({"resources": resources}))
    return into


def test_each_key_policy_lets_the_accounts_iam_grant_its_use_and_nobody_elses(
        aws_synth: tuple[Path, Synth], tmp_path: Path) -> None:
    stacks = load_stacks([aws_synth[0].parent], _state(aws_synth[0], tmp_path / "state"))
    team_keys = {arn: policy for arn, policy in stacks.key_policies.items() if "/team-vision-" in arn}
    assert len(team_keys) == 2 and len(stacks.key_policies) == 5, sorted(stacks.key_policies)   # + nlp's, platform's
    for arn, policy in team_keys.items():
        for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"):
            request = Request(action, arn)
            for kind in KINDS:
                assert key_denial(policy, request, _role_arn("acme", "vision", kind)) is None, (arn, action, kind)
            stranger = "arn:aws:iam::210987654321:role/acme-vision-training"
            assert key_denial(policy, request, stranger) == \
                "not allowed by the key policy (neither to the role nor to its account)"
