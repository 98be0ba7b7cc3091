"""Who this host is: instance id and address from IMDSv2, or from the config's local override.

IMDSv2 only (a session token on every read): the launch templates set ``http_tokens = required``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from gpufleet.errors import RuntimeFailure
from gpufleet.schema.agent_config import AgentConfig

IMDS_ENDPOINT = "http://169.254.169.254"
_TOKEN_TTL_S = "21600"


@dataclass(frozen=True)
class Identity:
    instance_id: str
    address: str          # where peers reach this host (multi-node rendezvous)
    team: str
    role: str


class ImdsClient:
    """A minimal IMDSv2 client: ``get`` returns None for paths that do not exist (404)."""

    def __init__(self, endpoint: str = IMDS_ENDPOINT, timeout_s: float = 2.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s
        self._token: str | None = None

    def _fetch_token(self) -> str:
        req = urllib.request.Request(f"{self.endpoint}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_S})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return resp.read().decode()

    def get(self, path: str) -> str | None:
        for attempt in range(2):
            if self._token is None:
                self._token = self._fetch_token()
            req = urllib.request.Request(f"{self.endpoint}/latest/{path.lstrip('/')}",
                                         headers={"X-aws-ec2-metadata-token": self._token})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return resp.read().decode()
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 0:   # token expired: fetch a new one once
                    self._token = None
                    continue
                raise
        return None


def imds_for(config: AgentConfig) -> ImdsClient | None:
    """The IMDS to watch for spot and scale-in notices; None in local mode without a fake IMDS."""
    if config.local is None:
        return ImdsClient()
    return ImdsClient(config.local.imds_endpoint) if config.local.imds_endpoint else None


def resolve_identity(config: AgentConfig, imds: ImdsClient | None = None) -> Identity:
    if config.local is not None:
        return Identity(config.local.instance_id, "127.0.0.1", config.team.team, config.role)
    imds = imds or ImdsClient()
    try:
        instance_id = imds.get("meta-data/instance-id")
        address = imds.get("meta-data/local-ipv4")
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeFailure("identity", f"IMDSv2 at {imds.endpoint} did not answer ({exc})",
                             "run on EC2 with IMDSv2 enabled, or set local.instance_id in the agent config") from None
    if not instance_id or not address:
        raise RuntimeFailure("identity", "IMDSv2 has no instance-id or local-ipv4",
                             "check the instance's metadata options")
    return Identity(instance_id, address, config.team.team, config.role)
