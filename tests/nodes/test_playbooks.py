"""The playbooks, inventories and the Packer template, checked without booting a host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml
from click.testing import CliRunner

import gpufleet.cli.main  # noqa: F401  (first: once main registers nodes_cmd, this order avoids a cycle)
from gpufleet import gpu_types
from gpufleet.cli.nodes_cmd import nodes
from gpufleet.local.emulator import Emulator
from gpufleet.nodes.configure import host_pattern
from gpufleet.nodes.events import failure_message, node_event, recap_from_stats
from gpufleet.ports import free_port
from tests.nodes.conftest import require

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
ROLES = sorted(p.name for p in (PLAYBOOKS / "roles").iterdir())
ANSIBLE_ENV = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg")}


def test_ansible_lint_passes_at_the_production_profile() -> None:
    proc = subprocess.run(["ansible-lint", "--offline", "-c", "playbooks/.ansible-lint", "playbooks"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in proc.stderr


@pytest.mark.parametrize("role", ROLES)
def test_every_role_documents_its_variables_in_defaults_and_argument_specs(role: str) -> None:
    root = PLAYBOOKS / "roles" / role
    defaults = yaml.safe_load((root / "defaults/main.yml").read_text()) or {}
    spec = yaml.safe_load((root / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(spec), f"undocumented: {set(defaults) - set(spec)}"
    assert all(opt.get("description") for opt in spec.values())
    assert all(name.startswith(f"{role}_") for name in defaults)


def test_nvswitch_instance_types_match_the_python_catalog() -> None:
    defaults = yaml.safe_load((PLAYBOOKS / "roles/nvidia_driver/defaults/main.yml").read_text())
    catalog = {t.name for t in gpu_types.GPU_INSTANCE_TYPES.values() if t.nvswitch}
    assert set(defaults["nvidia_driver_nvswitch_instance_types"]) == catalog


def test_host_pattern_narrows_team_to_role_and_limit() -> None:
    assert host_pattern("ml-research", None, None) == "team_ml_research"
    assert host_pattern("alpha", "serving", "gpu-0*") == "team_alpha:&role_serving:&gpu-0*"


def test_events_reduce_to_failures_with_host_task_and_message() -> None:
    looped = {"results": [{"failed": False}, {"failed": True, "msg": "bad item"}], "msg": "One or more items failed"}
    event = {"event": "runner_on_failed", "event_data": {"host": "h1", "task": "Install", "res": looped}}
    view = node_event(event)
    assert view is not None and (view.host, view.task, view.status, view.message) == ("h1", "Install", "failed",
                                                                                      "bad item")
    assert failure_message({"stderr": "  E: broken\n  apt  "}) == "E: broken apt"
    ignored = {"event": "runner_on_failed", "event_data": {"host": "h1", "ignore_errors": True, "res": {}}}
    assert node_event(ignored) is None
    recap = recap_from_stats({"ok": {"h1": 5}, "changed": {"h1": 2}, "dark": {"h2": 1}})
    assert recap["h1"].changed == 2 and recap["h2"].unreachable == 1


def test_unreachable_host_exits_1_naming_the_host(tmp_path: Path) -> None:
    port = free_port()   # nothing listens there
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"team_alpha": {"hosts": {"gpu-gone": {
        "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_ssh_common_args": "-o ConnectTimeout=3"}}}}}}))
    wheel = tmp_path / "gpufleet-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    result = CliRunner().invoke(nodes, ["configure", "--team", "alpha", "--inventory", str(inventory),
                                        "--wheel", str(wheel)])
    assert result.exit_code == 1
    assert "error: configure gpu-gone: gpu-gone is unreachable: " in result.output
    assert "gpu-gone" in result.output.split("recap")[-1]


def test_no_matching_host_is_a_user_error(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"team_beta": {"hosts": {"h": None}}}}}))
    wheel = tmp_path / "gpufleet-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    result = CliRunner().invoke(nodes, ["configure", "--team", "alpha", "--inventory", str(inventory),
                                        "--wheel", str(wheel)])
    assert result.exit_code == 2
    assert result.output.startswith("--team alpha: no host in ")


def _inventory(path: Path) -> dict[str, object]:
    proc = subprocess.run(["ansible-inventory", "-i", str(path), "--list"], env=ANSIBLE_ENV, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _plain(value: object) -> object:
    """ansible-inventory 2.19 wraps values from templates as {"__ansible_unsafe": value}."""
    return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value


def test_static_example_inventory_has_the_aws_ec2_groups() -> None:
    inv = _inventory(PLAYBOOKS / "inventory/static.example.yml")
    assert inv["team_alpha"]["hosts"] == ["gpu-train-01", "gpu-serve-01"]
    assert inv["role_serving"]["hosts"] == ["gpu-serve-01"]


def test_aws_ec2_inventory_groups_hosts_by_team_and_role_tags(moto_server: Emulator, tmp_path: Path) -> None:
    """The real amazon.aws.aws_ec2 plugin against moto's EC2; only the endpoint and keys are added."""
    ec2 = boto3.client("ec2", **moto_server.boto_kwargs("eu-west-1"))
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(tags: dict[str, str]) -> str:
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                                 TagSpecifications=spec)["Instances"][0]["InstanceId"]

    trainer = launch({"gpufleet:team": "ml-research", "gpufleet:role": "training"})
    server = launch({"gpufleet:team": "ml-research", "gpufleet:role": "serving", "gpufleet:endpoint": "fraud",
                     "gpufleet:variant": "green"})
    untagged = launch({"Name": "not-gpufleet"})
    config = yaml.safe_load((PLAYBOOKS / "inventory/aws_ec2.yml").read_text())
    config.update(regions=["eu-west-1"], endpoint_url=moto_server.endpoint, access_key="testing",
                  secret_key="testing")
    path = tmp_path / "moto.aws_ec2.yml"
    path.write_text(yaml.safe_dump(config))
    inv = _inventory(path)
    assert set(inv["team_ml_research"]["hosts"]) == {trainer, server}
    assert inv["role_training"]["hosts"] == [trainer] and inv["role_serving"]["hosts"] == [server]
    assert untagged not in json.dumps(inv)
    hostvars = {k: _plain(v) for k, v in inv["_meta"]["hostvars"][server].items()}
    assert (hostvars["gpufleet_role"], hostvars["gpufleet_endpoint"], hostvars["gpufleet_variant"]) == (
        "serving", "fraud", "green")
    assert hostvars["instance_type"] == "g5.xlarge"


def test_packer_template_validates_with_packer_1_6(tmp_path: Path) -> None:
    require("packer")
    proc = subprocess.run(["packer", "validate", "-var", f"agent_wheel={tmp_path / 'x.whl'}",
                           "ami/gpu-node.pkr.hcl"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
