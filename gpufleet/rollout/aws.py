"""boto3 clients for one region, pointed at the emulator in local mode, created once each."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from gpufleet.local.emulator import LOCAL_CREDENTIALS

# Short timeouts and few retries: callers poll, so a slow answer is better retried than waited on.
_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)


@dataclass
class AwsAccess:
    """Where to reach AWS: a region, and the emulator's endpoint in local mode."""

    region: str
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                kwargs: dict[str, Any] = {"region_name": self.region, "config": _CONFIG}
                if self.endpoint_url:
                    kwargs.update(endpoint_url=self.endpoint_url,
                                  aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
                self._clients[service] = boto3.session.Session().client(service, **kwargs)
            return self._clients[service]
