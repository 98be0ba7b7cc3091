from gpufleet.local.emulator import Emulator
from tests.support.aws import client, create_team_resources


def test_team_resources_fixture_creates_named_resources(moto_server: Emulator) -> None:
    runtime = create_team_resources(moto_server, platform="smoke", team="fixture")
    assert runtime.buckets.artifacts == "smoke-fixture-artifacts"
    names = {b["Name"] for b in client(moto_server, "s3").list_buckets()["Buckets"]}
    assert {"smoke-fixture-data", "smoke-fixture-checkpoints"} <= names
    assert client(moto_server, "dynamodb").describe_table(TableName=runtime.tables.models)["Table"]["KeySchema"][1][
        "AttributeName"] == "version"
