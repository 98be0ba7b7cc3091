"""The real-AWS team stacks' bucket policies, as the audit judges them (gpufleet.audit.evaluate.bucket_denial):
each team's roles pass their own buckets' Deny guards, and every other role is denied object access. moto
applies no bucket policy gpufleet writes (the local synth leaves them out), so this is their proof."""

from __future__ import annotations

from pathlib import Path

from gpufleet.audit.evaluate import Request, bucket_denial
from gpufleet.audit.stacks import Stacks, load_stacks
from tests.stacks.conftest import Synth

ACCOUNT = "123456789012"
KINDS = ("training", "serving", "operator", "job", "replication")


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
                    assert bucket_denial(policies[bucket], request, outsider) == "DenyObjectAccessOutsideTeam", \
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
        assert bucket_denial(policy, over_http, operator) == "DenyInsecureTransport", bucket
