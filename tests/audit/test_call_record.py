"""The call record against the real moto server: what a recorded ``AwsClients`` writes, call by call."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError

from gpufleet.aws import AwsClients
from gpufleet.callrecord import RECORD_ENV, Caller, flush_all, read_calls
from gpufleet.local.emulator import Emulator


def test_each_call_is_recorded_with_its_role_actions_arns_and_the_kms_key_s3_used(
        moto_server: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "calls"))
    clients = AwsClients.create("us-east-1", moto_server.endpoint, Caller("training", "t"))
    key = clients.client("kms").create_key()["KeyMetadata"]["Arn"]   # recorded too: kms:CreateKey
    bucket = f"rec-{uuid.uuid4().hex[:10]}"
    clients.s3.create_bucket(Bucket=bucket)
    clients.s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
    clients.s3.put_object(Bucket=bucket, Key="models/m/1/model.tar.gz", Body=b"x")
    clients.s3.put_object(Bucket=bucket, Key="models/m/2/model.tar.gz", Body=b"x", IfNoneMatch="*")
    upload = clients.s3.create_multipart_upload(Bucket=bucket, Key="models/m/3/model.tar.gz")["UploadId"]
    url = clients.sqs.create_queue(QueueName=bucket)["QueueUrl"]
    clients.sqs.send_message(QueueUrl=url, MessageBody="{}")
    clients.table("no-such-table")   # a resource object makes no call until used
    offline = AwsClients.create("us-east-1", "http://127.0.0.1:9", Caller("serving", "t"))
    with pytest.raises(EndpointConnectionError):
        offline.client("cloudwatch").put_metric_data(Namespace="gpufleet", MetricData=[
            {"MetricName": "m", "Value": 1.0}])
    flush_all()

    calls = {(c.role, c.operation): c for c in read_calls(tmp_path / "calls")}
    puts = sorted((c for c in read_calls(tmp_path / "calls") if c.operation == "PutObject"),
                  key=lambda c: c.targets)
    put, conditional_put = puts
    assert (put.team, put.region, put.status) == ("t", "us-east-1", 200)
    assert put.targets == [("s3:PutObject", f"arn:aws:s3:::{bucket}/models/m/1/model.tar.gz")]
    assert put.kms_key == key
    # The condition keys IAM sees: a write that creates the object, with or without If-None-Match.
    assert put.context == {"s3:ObjectCreationOperation": "true"}
    assert conditional_put.context == {"s3:ObjectCreationOperation": "true", "s3:if-none-match": "*"}
    assert upload and calls[("training", "CreateMultipartUpload")].context == {"s3:ObjectCreationOperation": "false"}
    send = calls[("training", "SendMessage")]
    assert send.targets == [("sqs:SendMessage", f"arn:aws:sqs:us-east-1:{url.rstrip('/').split('/')[-2]}:{bucket}")]
    failed = calls[("serving", "PutMetricData")]   # ended in an exception, still a call the role made
    assert failed.status is None and failed.context == {"cloudwatch:namespace": "gpufleet"}
    assert ("training", "CreateKey") in calls
