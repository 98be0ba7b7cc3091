"""The cdktf app: stacks, provider and backend per target, the exact provider pin, and valid Terraform."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpufleet.app import synth_app
from gpufleet.config import load_config
from gpufleet.target import aws_target, local_target
from gpufleet.terraform.runner import StackRunner
from tests.foundation.test_config import EXAMPLE

CFG = load_config(EXAMPLE)


def stack_doc(outdir: Path, stack: str) -> dict[str, Any]:
    return json.loads((outdir / "stacks" / stack / "cdk.tf.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def local_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    synth_app(CFG, local_target(out / "state", "http://127.0.0.1:45999"), out / "cdktf.out")
    return out / "cdktf.out"


@pytest.fixture(scope="module")
def aws_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aws")
    cfg = CFG.model_copy(update={"platform": CFG.platform.model_copy(update={
        "state_backend": {"bucket": "acme-tfstate", "key_prefix": "gpufleet"}})})
    from gpufleet.config import PlatformConfig

    synth_app(PlatformConfig.model_validate(cfg.model_dump()), aws_target(out / "state"), out / "cdktf.out")
    return out / "cdktf.out"


def test_one_platform_stack_and_one_stack_per_team(local_out: Path) -> None:
    assert sorted(p.name for p in (local_out / "stacks").iterdir()) == ["platform", "team-nlp", "team-vision"]


def test_provider_is_pinned_exactly_to_the_mirrored_version(local_out: Path) -> None:
    for stack in ("platform", "team-vision"):
        required = stack_doc(local_out, stack)["terraform"]["required_providers"]["aws"]
        assert required == {"source": "aws", "version": "5.100.0"}


def test_local_target_points_every_service_at_the_emulator(local_out: Path) -> None:
    provider = next(p for p in stack_doc(local_out, "team-vision")["provider"]["aws"] if "alias" not in p)
    endpoints = provider["endpoints"][0]
    assert {"s3", "ec2", "iam", "sqs", "dynamodb", "autoscaling", "elbv2", "cloudwatch", "sts"} <= set(endpoints)
    assert set(endpoints.values()) == {"http://127.0.0.1:45999"}
    assert provider["skip_credentials_validation"] is True and provider["s3_use_path_style"] is True
    assert provider["default_tags"][0]["tags"] == {"gpufleet:platform": "acme", "gpufleet:team": "vision"}


def test_local_target_keeps_state_under_the_workspace(local_out: Path) -> None:
    backend = stack_doc(local_out, "platform")["terraform"]["backend"]
    assert backend["local"]["path"].endswith("/state/platform.tfstate")


def test_aws_target_has_no_emulator_and_uses_s3_state_with_native_locking(aws_out: Path) -> None:
    doc = stack_doc(aws_out, "team-nlp")
    provider = next(p for p in doc["provider"]["aws"] if "alias" not in p)  # "dr" is the DR region
    assert "endpoints" not in provider and "access_key" not in provider
    s3 = doc["terraform"]["backend"]["s3"]
    assert s3["bucket"] == "acme-tfstate" and s3["key"] == "gpufleet/team-nlp.tfstate"
    assert s3["use_lockfile"] is True and s3["encrypt"] is True


def test_terraform_validate_passes_on_every_stack(local_out: Path, tmp_path: Path) -> None:
    for stack_dir in sorted((local_out / "stacks").iterdir()):
        runner = StackRunner(stack_dir, tmp_path)
        runner.init()
        proc = subprocess.run([runner.binary, "validate", "-json"], cwd=stack_dir, env=runner.env,
                              capture_output=True, text=True, check=False)
        assert json.loads(proc.stdout)["valid"], (stack_dir.name, proc.stdout)


# Required into jsii's node beside gpufleet's hook: at exit, how many of the AWS provider's JS modules it loaded.
MODULE_PROBE = """
const fs = require("fs"), path = require("path");
process.on("exit", () => {
  const loaded = Object.keys(require.cache).filter((f) => /[\\\\/]provider-aws[\\\\/].*lib[\\\\/]/.test(f));
  fs.writeFileSync(path.join(process.env.PROBE_DIR, `${process.pid}.count`), String(loaded.length));
});
"""


def synth_in_a_fresh_process(out: Path, state: Path, plain: bool) -> int:
    """Synthesize the example as the CLI does, in a new interpreter; how many provider JS modules node loaded."""
    probe = out.parent / f"{out.name}-probe"
    probe.mkdir(parents=True)
    (probe / "probe.js").write_text(MODULE_PROBE)
    script = (
        "from pathlib import Path; from gpufleet.app import synth_app; "
        "from gpufleet.config import load_config; from gpufleet.target import local_target; "
        f"synth_app(load_config({str(EXAMPLE)!r}), local_target(Path({str(state)!r}), "
        f"'http://127.0.0.1:45999'), Path({str(out)!r}))"
    )
    env = {"GPUFLEET_PLAIN_PROVIDER_IMPORT": "1" if plain else "0", "PATH": "/usr/bin:/bin:/usr/local/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HOME": str(Path.home()),
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "PROBE_DIR": str(probe),
           "NODE_OPTIONS": f'--require "{probe / "probe.js"}"'}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    return max(int(p.read_text()) for p in probe.glob("*.count"))


def test_fast_provider_loading_synthesizes_byte_identical_output(local_out: Path, tmp_path: Path) -> None:
    """gpufleet.providers loads only the binding modules a synth uses, in Python and, through
    provider_index_hook.js, in jsii's node: not a byte of the output may change."""
    state = local_out.parent / "state"
    fast_modules = synth_in_a_fresh_process(tmp_path / "fast", state, plain=False)
    plain_modules = synth_in_a_fresh_process(tmp_path / "plain", state, plain=True)
    assert plain_modules >= 2135, "the plain import loads every resource module"
    assert 0 < fast_modules < 100, f"node loaded {fast_modules} provider modules: the index hook did not apply"
    for stack_dir in (local_out / "stacks").iterdir():
        fast, plain = (tmp_path / kind / "stacks" / stack_dir.name / "cdk.tf.json" for kind in ("fast", "plain"))
        assert plain.read_bytes() == fast.read_bytes() == (stack_dir / "cdk.tf.json").read_bytes(), stack_dir.name


def test_stacks_through_cdktfs_testing_api(tmp_path: Path) -> None:
    from cdktf import Testing as CdktfTesting  # imported under another name: `Testing` confuses pytest collection

    from gpufleet.app import build_app
    from gpufleet.providers import AwsProvider, DynamodbTable

    app = build_app(CFG, local_target(tmp_path / "state", None), tmp_path / "out")
    team = app.node.find_child("team-vision")
    synth = CdktfTesting.synth(team)
    assert CdktfTesting.to_have_provider_with_properties(synth, AwsProvider.TF_RESOURCE_TYPE, {"region": "us-east-1"})
    assert CdktfTesting.to_have_resource_with_properties(synth, DynamodbTable.TF_RESOURCE_TYPE, {
        "name": "acme-vision-jobs", "hash_key": "job_id"})
    assert not CdktfTesting.to_have_resource_with_properties(synth, DynamodbTable.TF_RESOURCE_TYPE, {
        "name": "acme-nlp-jobs"})


def synth_stderr(tmp_path: Path, **env_extra: str) -> str:
    """``gpufleet synth`` of the example in a fresh process, without the test run's banner silencer."""
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(Path.home()),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env_extra}
    done = subprocess.run([sys.executable, "-m", "gpufleet.cli", "synth", "--config", str(EXAMPLE),
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_an_unsupported_node_gets_one_line_not_jsiis_banner(tmp_path: Path) -> None:
    """Past jsii's support of the machine's Node.js (Node 20 since 2026-10-30), jsii prints an 11-line banner
    that its Python side shows as byte-string reprs: gpufleet says it in one line with the fix instead, and
    says nothing when the user has already silenced it. Runs the real node, whatever its version."""
    from gpufleet.providers import NODE_EOL_SILENCER, OLDEST_SUPPORTED_NODE, _node_major

    major = _node_major()
    assert major is not None, "node is on PATH in this suite"
    stderr = synth_stderr(tmp_path)
    assert "!!" not in stderr and "b'" not in stderr, stderr
    warnings = [line for line in stderr.splitlines() if "Node.js" in line]
    if major < OLDEST_SUPPORTED_NODE:
        assert len(warnings) == 1 and f"install Node.js {OLDEST_SUPPORTED_NODE}" in warnings[0], stderr
    else:
        assert warnings == [], stderr
    assert "Node.js" not in synth_stderr(tmp_path, **{NODE_EOL_SILENCER: str(major)})
