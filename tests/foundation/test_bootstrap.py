"""`gpufleet bootstrap`: the Terraform state bucket, against a real moto server."""

from __future__ import annotations

import json

import pytest

from gpufleet.bootstrap import bootstrap_state_bucket, tls_only_policy
from gpufleet.config import PlatformConfig
from gpufleet.errors import UserInputError
from gpufleet.local.emulator import Emulator
from tests.foundation.test_config import example
from tests.support.aws import client


def config_with_backend(bucket: str) -> PlatformConfig:
    data = example()
    data["platform"]["state_backend"] = {"bucket": bucket}
    return PlatformConfig.model_validate(data)


def test_state_bucket_is_versioned_encrypted_private_and_bootstrap_is_idempotent(moto_server: Emulator) -> None:
    s3 = client(moto_server, "s3")
    cfg = config_with_backend("acme-bootstrap-tfstate")
    for _ in range(2):
        assert bootstrap_state_bucket(cfg, s3, tls_only=False) == "acme-bootstrap-tfstate"
    bucket = "acme-bootstrap-tfstate"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    owner = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"][0]
    assert owner["ObjectOwnership"] == "BucketOwnerEnforced"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(bucket) == 1


def test_real_aws_bootstrap_denies_insecure_transport() -> None:
    statement = json.loads(tls_only_policy("b"))["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bootstrap_without_a_backend_says_what_to_add(moto_server: Emulator) -> None:
    with pytest.raises(UserInputError) as info:
        bootstrap_state_bucket(PlatformConfig.model_validate(example()), client(moto_server, "s3"))
    assert info.value.problems[0].startswith("platform.state_backend: not set (add `state_backend:")


def test_with_a_dr_region_the_state_bucket_replicates_to_a_versioned_replica_there(moto_server: Emulator) -> None:
    data = example()
    data["platform"].update(state_backend={"bucket": "acme-dr-tfstate"}, dr_region="us-west-2")
    cfg = PlatformConfig.model_validate(data)
    s3, s3_dr, iam = client(moto_server, "s3"), client(moto_server, "s3", "us-west-2"), client(moto_server, "iam")
    for _ in range(2):
        bootstrap_state_bucket(cfg, s3, tls_only=False, s3_dr=s3_dr, iam=iam)
    assert s3_dr.get_bucket_location(Bucket="acme-dr-tfstate-dr")["LocationConstraint"] == "us-west-2"
    assert s3_dr.get_bucket_versioning(Bucket="acme-dr-tfstate-dr")["Status"] == "Enabled"
    rule = s3.get_bucket_replication(Bucket="acme-dr-tfstate")["ReplicationConfiguration"]["Rules"][0]
    assert rule["Status"] == "Enabled" and rule["Destination"]["Bucket"] == "arn:aws:s3:::acme-dr-tfstate-dr"
