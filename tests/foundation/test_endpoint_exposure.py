"""Endpoint exposure: every unsafe internet-facing endpoint config is refused with one line naming the
field and the fix, and `gpufleet validate` exits 2 with exactly those lines (no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.config import parse_config
from gpufleet.errors import UserInputError
from tests.foundation.test_config import EXAMPLE

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
WHERE = "teams[0].endpoints[0]"


def with_endpoint(**fields: Any) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["teams"][0]["endpoints"] = [{"name": "chat", "instance_type": "g5.xlarge", **fields}]
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(UserInputError) as info:
        parse_config(data)
    return info.value.problems


@pytest.mark.parametrize(("fields", "expected"), [
    ({"internet_facing": True, "allowed_cidrs": ["203.0.113.0/24"]},
     [f"{WHERE}.certificate_arn: an internet-facing endpoint serves HTTPS only and needs a certificate "
      "(set it to an ACM certificate ARN, or set internet_facing: false)"]),
    ({"internet_facing": True, "certificate_arn": CERT},
     [f"{WHERE}.allowed_cidrs: an internet-facing endpoint needs a client allow-list (list your clients' "
      "networks, e.g. ['203.0.113.0/24'], or set public: true)"]),
    ({"internet_facing": True, "certificate_arn": CERT, "allowed_cidrs": ["0.0.0.0/0"]},
     [f"{WHERE}.allowed_cidrs: '0.0.0.0/0' lets anyone on the internet connect (list your clients' networks, "
      "or set public: true if the endpoint is meant to be public)"]),
    ({"internet_facing": True},
     [f"{WHERE}.certificate_arn: an internet-facing endpoint serves HTTPS only and needs a certificate "
      "(set it to an ACM certificate ARN, or set internet_facing: false)",
      f"{WHERE}.allowed_cidrs: an internet-facing endpoint needs a client allow-list (list your clients' "
      "networks, e.g. ['203.0.113.0/24'], or set public: true)"]),
    ({"public": True},
     [f"{WHERE}.public: only an internet-facing endpoint can be public (remove public, or set "
      "internet_facing: true)"]),
    ({"internet_facing": True, "certificate_arn": CERT, "allowed_cidrs": ["203.0.113.7/24"]},
     [f"{WHERE}.allowed_cidrs: '203.0.113.7/24' is not an IPv4 network (203.0.113.7/24 has host bits set; "
      "e.g. '203.0.113.0/24')"]),
])
def test_each_unsafe_endpoint_config_is_refused_with_one_line(fields: dict[str, Any], expected: list[str]) -> None:
    assert problems(with_endpoint(**fields)) == expected


@pytest.mark.parametrize("fields", [
    {},   # internal: the VPC only
    {"internet_facing": True, "certificate_arn": CERT, "allowed_cidrs": ["203.0.113.0/24"]},
    {"internet_facing": True, "certificate_arn": CERT, "public": True},
    {"internet_facing": True, "certificate_arn": CERT, "public": True, "allowed_cidrs": ["0.0.0.0/0"]},
])
def test_safe_endpoint_configs_load(fields: dict[str, Any]) -> None:
    ep = parse_config(with_endpoint(**fields)).teams[0].endpoints[0]
    assert ep.client_cidrs == (["0.0.0.0/0"] if ep.public else ep.allowed_cidrs)


def test_validate_exits_2_with_the_lines_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "gpufleet.yaml"
    config.write_text(yaml.safe_dump(with_endpoint(internet_facing=True)))
    done = subprocess.run([sys.executable, "-m", "gpufleet.cli.main", "validate", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out
    assert f"{WHERE}.certificate_arn: an internet-facing endpoint" in out
    assert f"{WHERE}.allowed_cidrs: an internet-facing endpoint needs a client allow-list" in out
