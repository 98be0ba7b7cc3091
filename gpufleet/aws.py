"""boto3 clients for every part of gpufleet (agents, CLI, local cloud, DR): the lower floor's AWS access.

The endpoint is injected by the caller (the agent config's local overrides, or the workspace's emulator
record), never found by importing local mode. One ``AwsClients`` per process. Creating clients is not
thread-safe in boto3, so creation takes a lock; the clients themselves are safe to share between threads.
The CLI builds one with ``AwsClients.create``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from gpufleet.callrecord import Caller, recorder

if TYPE_CHECKING:
    from gpufleet.schema.agent_config import AgentConfig

# Credentials the emulator (moto) accepts; never real ones. Local mode hands them to every process it starts.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# Every error an AWS call can end with once botocore's own retries are spent: an answer (ClientError), a
# transport or credential problem (BotoCoreError), or an answer botocore cannot parse (ResponseParserError,
# not a BotoCoreError: moto answers some unsupported calls with an HTML 500).
AWS_ERRORS = (ClientError, BotoCoreError, ResponseParserError)

# Long polls wait up to 20 s, so reads must outlast them.
_BOTO_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30)


@dataclass
class AwsClients:
    region: str
    endpoint_url: str | None = None
    caller: Caller | None = None    # who makes the calls, for the call record (default: the environment's)
    _session: Any = field(default=None, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(cls, region: str, endpoint_url: str | None = None, caller: Caller | None = None) -> AwsClients:
        """Real AWS credentials from the default chain; the emulator's fixed ones when an endpoint is given
        and the environment has none."""
        kwargs: dict[str, str] = {"region_name": region}
        if endpoint_url and not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs["aws_access_key_id"] = LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]
            kwargs["aws_secret_access_key"] = LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
        return cls(region=region, endpoint_url=endpoint_url, caller=caller,
                   _session=boto3.session.Session(**kwargs))

    @classmethod
    def for_agent(cls, config: AgentConfig) -> AwsClients:
        return cls.create(config.team.region, config.local.aws_endpoint_url if config.local else None,
                          Caller(config.role, config.team.team))

    def _recorded(self, client: Any) -> Any:
        rec = recorder(self.caller)
        if rec is not None:
            rec.attach(client)
        return client

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._cache:
                self._cache[service] = self._recorded(self._session.client(
                    service, endpoint_url=self.endpoint_url, config=_BOTO_CONFIG))
            return self._cache[service]

    def table(self, name: str) -> Any:
        """A DynamoDB ``Table`` resource (typed conditions and automatic (de)serialization)."""
        key = f"table:{name}"
        with self._lock:
            if key not in self._cache:
                resource = self._session.resource("dynamodb", endpoint_url=self.endpoint_url, config=_BOTO_CONFIG)
                self._recorded(resource.meta.client)
                self._cache[key] = resource.Table(name)
            return self._cache[key]

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def sqs(self) -> Any:
        return self.client("sqs")

    @property
    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")
