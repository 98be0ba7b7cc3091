"""Fixtures for the stack tests: synthesized stacks (real-AWS and local targets) read back as JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpufleet.app import synth_app
from gpufleet.config import PlatformConfig, load_config, parse_config
from gpufleet.target import aws_target, local_target
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gpufleet.yaml"
Synth = dict[str, dict[str, Any]]  # stack name -> cdk.tf.json


def synth(cfg: PlatformConfig, tmp: Path, kind: str) -> tuple[Path, Synth]:
    target = aws_target(tmp / "state") if kind == "aws" else local_target(tmp / "state", "http://127.0.0.1:1")
    result = synth_app(cfg, target, tmp / "out")
    stacks = tmp / "out" / "stacks"
    return stacks, {name: json.loads((stacks / name / "cdk.tf.json").read_text()) for name in result.stacks}


@pytest.fixture(scope="session")
def example_cfg() -> PlatformConfig:
    return load_config(EXAMPLE)


@pytest.fixture(scope="session")
def aws_synth(example_cfg: PlatformConfig, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Synth]:
    return synth(example_cfg, tmp_path_factory.mktemp("aws"), "aws")


@pytest.fixture(scope="session")
def local_synth(example_cfg: PlatformConfig, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Synth]:
    return synth(example_cfg, tmp_path_factory.mktemp("local"), "local")


@pytest.fixture(scope="session")
def aws_stacks(aws_synth: tuple[Path, Synth]) -> Synth:
    return aws_synth[1]


@pytest.fixture(scope="session")
def local_stacks(local_synth: tuple[Path, Synth]) -> Synth:
    return local_synth[1]


def resources(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return doc.get("resource", {}).get(rtype, {})


def data_sources(doc: dict[str, Any], dtype: str) -> dict[str, dict[str, Any]]:
    return doc.get("data", {}).get(dtype, {})


def one(doc: dict[str, Any], rtype: str, where: Callable[[dict[str, Any]], bool] = lambda r: True) -> dict[str, Any]:
    found = [r for r in resources(doc, rtype).values() if where(r)]
    assert len(found) == 1, f"expected one {rtype}, found {len(found)}"
    return found[0]


REF = re.compile(r"\$\{(data\.)?([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.[a-z_]+\}")


def referenced(doc: dict[str, Any], expr: str) -> dict[str, Any]:
    """The resource (or data source) a ``${type.name.attr}`` reference points at."""
    match = REF.search(expr)
    assert match, f"not a reference: {expr}"
    block = "data" if match[1] else "resource"
    return doc[block][match[2]][match[3]]


def policy_statements(doc: dict[str, Any], expr: str) -> list[dict[str, Any]]:
    """The statements of the policy document a ``policy = ${data.aws_iam_policy_document.x.json}`` names."""
    return referenced(doc, expr)["statement"]


def config_with(overrides: dict[str, Any]) -> PlatformConfig:
    """The example config with top-level sections replaced."""
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(overrides)
    return parse_config(data)


INTERNET_FACING = {"teams": [{"name": "web", "training": {"instance_types": ["g5.xlarge"]}, "endpoints": [{
    "name": "chat", "instance_type": "g5.xlarge", "internet_facing": True, "allowed_cidrs": ["203.0.113.0/24"],
    "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"}]}]}


@pytest.fixture(scope="session")
def internet_facing_synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Synth]:
    """The example platform with one team whose endpoint is internet-facing (TLS, allow-list, WAF)."""
    return synth(config_with(INTERNET_FACING), tmp_path_factory.mktemp("internet"), "aws")


@pytest.fixture(scope="session")
def internet_facing_stacks(internet_facing_synth: tuple[Path, Synth]) -> Synth:
    return internet_facing_synth[1]
