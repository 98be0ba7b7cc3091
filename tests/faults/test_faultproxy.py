"""The fault proxy itself (tests/support/faultproxy.py): its errors are the ones botocore parses and retries
as AWS's, in each protocol the agents and Terraform speak; a dropped response means the write happened."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from gpufleet.local.emulator import Emulator
from tests.support.faultproxy import FaultProxy

# botocore's throttling codes (botocore.retries.standard.ThrottledRetryableChecker)
THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown"}
CALLS: dict[str, Callable[[Any], Any]] = {
    "dynamodb": lambda c: c.list_tables(),                      # JSON 1.0
    "logs": lambda c: c.describe_log_groups(),                  # JSON 1.1
    "sqs": lambda c: c.list_queues(),                           # JSON, query-compatible
    "cloudwatch": lambda c: c.list_metrics(),                   # Smithy RPC v2 CBOR, query-compatible
    "autoscaling": lambda c: c.describe_auto_scaling_groups(),  # query XML
    "ec2": lambda c: c.describe_vpcs(),                         # EC2 XML
    "s3": lambda c: c.list_buckets(),                           # REST XML
}


def _client(proxy: FaultProxy, service: str, attempts: int = 1) -> Any:
    return boto3.client(service, endpoint_url=proxy.url, region_name="us-east-1",  # type: ignore[call-overload]
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}))


@pytest.mark.parametrize("service", sorted(CALLS))
def test_throttling_and_503s_come_in_each_protocols_error_shape(moto_server: Emulator, service: str) -> None:
    with FaultProxy(moto_server.endpoint) as proxy:
        client = _client(proxy, service)
        CALLS[service](client)
        proxy.throttle()
        answers = []
        for _ in range(2):
            with pytest.raises(ClientError) as error:
                CALLS[service](client)
            answers.append((error.value.response["Error"]["Code"],
                            error.value.response["ResponseMetadata"]["HTTPStatusCode"]))
        proxy.heal()
        CALLS[service](client)
    throttled, unavailable = answers
    assert throttled[0] in THROTTLING and throttled[1] in (400, 503), answers
    assert unavailable[1] == 503 and "Unavailable" in unavailable[0], answers
    assert [c.outcome for c in proxy.calls] == ["forwarded", "throttled", "unavailable", "forwarded"]


def test_a_dropped_response_was_still_written_and_the_sdk_retries(moto_server: Emulator) -> None:
    with FaultProxy(moto_server.endpoint) as proxy:
        ddb = _client(proxy, "dynamodb", attempts=3)
        ddb.create_table(TableName="fault-proxy-drop", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
        proxy.drop_response("PutItem", times=1)
        ddb.put_item(TableName="fault-proxy-drop", Item={"k": {"S": "x"}, "n": {"N": "1"}})
        assert [(c.action, c.outcome) for c in proxy.calls if c.action == "PutItem"] == [
            ("PutItem", "dropped"), ("PutItem", "forwarded")]
        proxy.drop_response("GetItem", times=1)
        with pytest.raises(ConnectionClosedError):
            _client(proxy, "dynamodb").get_item(TableName="fault-proxy-drop", Key={"k": {"S": "x"}})
        assert ddb.get_item(TableName="fault-proxy-drop", Key={"k": {"S": "x"}})["Item"]["n"] == {"N": "1"}


def test_a_stalled_download_holds_after_the_first_bytes_until_healed(moto_server: Emulator) -> None:
    with FaultProxy(moto_server.endpoint) as proxy:
        s3 = _client(proxy, "s3")
        s3.create_bucket(Bucket="fault-proxy-stall")
        s3.put_object(Bucket="fault-proxy-stall", Key="big", Body=b"x" * 100_000)
        held = proxy.stall(lambda call: call.method == "GET" and call.path.startswith("/fault-proxy-stall/big"),
                           after_bytes=10_000)
        body = s3.get_object(Bucket="fault-proxy-stall", Key="big")["Body"]
        assert held.wait(10)
        assert len(body.read(10_000)) == 10_000
        proxy.heal()
        assert len(body.read()) == 90_000
