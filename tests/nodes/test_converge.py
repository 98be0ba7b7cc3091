"""gpu-node.yml on a booted Debian host (systemd-nspawn), driven by `gpufleet nodes configure`.

Real: Ansible, ssh, apt, systemd, pip (the agent's deps come from PyPI), the agent and moto.
Stand-ins: NVIDIA's repositories are unreachable here, so a signed repository on 127.0.0.1 serves
packages with NVIDIA's names and versions (tests/nodes/aptrepo.py); there is no GPU, so the GPU
checks take their no-GPU path (and fail where a GPU is required).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpufleet.cli.nodes_cmd import nodes
from gpufleet.local.emulator import Emulator, free_port
from gpufleet.nodes.configure import ConfigureRequest, configure_nodes
from gpufleet.nodes.runner import PlaybookResult
from tests.nodes import aptrepo
from tests.nodes.conftest import BootFn, nvidia_repo_vars, write_inventory
from tests.nodes.nspawn import Target
from tests.support.aws import create_team_resources

pytestmark = pytest.mark.slow
TEAM = "ml-research"


@dataclass
class Host:
    target: Target
    inventory: Path
    runtime: Path
    wheel: Path
    health_port: int
    first_output: str
    first_exit: int

    def configure(self, check: bool = False, inventory: Path | None = None,
                  build_wheel: bool = False) -> tuple[PlaybookResult, list[str]]:
        """Run the playbook again; also returns the tasks that reported a change."""
        changed: list[str] = []
        wheel = None if build_wheel else self.wheel
        result = configure_nodes(ConfigureRequest(team=TEAM, role="training", check=check, wheel=wheel,
                                                  runtime=self.runtime, inventory=inventory or self.inventory,
                                                  workspace=self.inventory.parent),
                                 lambda e: changed.append(e.task) if e.status == "changed" else None)
        return result, changed


def host_vars(repo_url: str, emu: Emulator, health_port: int, name: str) -> dict[str, object]:
    return {**nvidia_repo_vars(repo_url),
            # torch (the `training` extra) is a multi-GB download: the agent starts without it.
            "gpufleet_agent_extras": ["agent"],
            "gpufleet_agent_health_port": health_port,
            "gpufleet_agent_local": {"aws_endpoint_url": emu.endpoint, "instance_id": f"i-{name}"}}


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(nodes, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def host(boot_target: BootFn, nvidia_repo: str, agent_wheel: Path, moto_server: Emulator,
         tmp_path_factory: pytest.TempPathFactory) -> Host:
    """One host converged once through the CLI; the tests below inspect and re-run it."""
    work = tmp_path_factory.mktemp("converge")
    runtime = create_team_resources(moto_server, platform="nodes", team=TEAM)
    (work / "runtime.json").write_text(runtime.to_json())
    target = boot_target()
    port = free_port()
    inventory = write_inventory(work / "hosts.yml", target, TEAM, "training",
                                host_vars(nvidia_repo, moto_server, port, target.name))
    code, output = cli("configure", "--team", TEAM, "--role", "training", "--inventory", str(inventory),
                       "--wheel", str(agent_wheel), "--runtime", str(work / "runtime.json"))
    return Host(target, inventory, work / "runtime.json", agent_wheel, port, output, code)


def test_first_run_converges_and_prints_a_per_host_recap(host: Host) -> None:
    assert host.first_exit == 0, host.first_output
    assert "recap" in host.first_output and host.target.name in host.first_output
    assert "changed" in host.first_output   # changed results are streamed as they happen


def test_second_run_changes_nothing(host: Host) -> None:
    # The CLI's own wheel build this time: an unchanged checkout must give a byte-identical wheel.
    result, changed = host.configure(build_wheel=True)
    assert result.failures == []
    assert result.recap[host.target.name].changed == 0, changed


def test_check_mode_on_the_converged_host_reports_no_change(host: Host) -> None:
    result, changed = host.configure(check=True)
    assert result.failures == []
    assert result.recap[host.target.name].changed == 0, changed


def test_agent_runs_as_a_hardened_service_and_answers_healthz(host: Host) -> None:
    assert host.target.ssh("systemctl is-active gpufleet-agent").stdout.strip() == "active"
    shown = host.target.ssh("systemctl show gpufleet-agent -p User -p NoNewPrivileges -p ProtectSystem "
                            "-p Restart -p PrivateTmp").stdout
    props = dict(line.split("=", 1) for line in shown.split())
    assert props == {"User": "gpufleet", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                     "Restart": "on-failure", "PrivateTmp": "yes"}
    with urllib.request.urlopen(f"http://127.0.0.1:{host.health_port}/healthz", timeout=5) as resp:
        health = json.load(resp)
    assert resp.status == 200 and health["healthy"] is True
    assert health["role"] == "training" and health["team"] == TEAM
    # The config on disk is root's alone; the agent reads systemd's private copy of it.
    assert host.target.ssh("stat -c %U:%a /etc/gpufleet/agent.yaml").stdout.strip() == "root:600"


def test_driver_and_fabric_manager_are_pinned_not_the_newest(host: Host) -> None:
    def version(pkg: str) -> str:
        return host.target.ssh(f"dpkg-query -W -f='${{Version}}' {pkg}").stdout

    assert version("cuda-drivers-535") == f"{aptrepo.DRIVER}-1"          # the repo also has 535.999.01
    assert version("nvidia-fabricmanager-535") == f"{aptrepo.DRIVER}-1"  # p4d.24xlarge has NVSwitch
    assert version("nvidia-container-toolkit-base") == aptrepo.CONTAINER_TOOLKIT
    assert version("cuda-toolkit-12-2").startswith("12.2")
    upgrade = host.target.ssh("apt-get -s upgrade").stdout
    assert "535.999" not in upgrade and "1.99.0" not in upgrade


def test_persistence_mode_is_configured_for_nvidia_persistenced(host: Host) -> None:
    unit = host.target.ssh("systemctl cat nvidia-persistenced").stdout
    assert "--persistence-mode" in unit.split("ExecStart=\n")[-1]
    assert host.target.ssh("systemctl is-enabled nvidia-persistenced").stdout.strip() == "enabled"


def test_required_gpu_missing_fails_naming_host_task_and_message(host: Host, tmp_path: Path) -> None:
    inventory = tmp_path / "gpu-required.yml"
    inventory.write_text(host.inventory.read_text().replace("all:\n", "all:\n  vars:\n    gpu_required: true\n", 1))
    code, output = cli("configure", "--team", TEAM, "--inventory", str(inventory), "--wheel", str(host.wheel),
                       "--runtime", str(host.runtime))
    assert code == 1
    error = output.strip().splitlines()[-1]
    assert error.startswith(f"error: configure {host.target.name}: {host.target.name} failed at task "
                            "'Fail where a GPU is required but absent': no GPU: /dev/nvidia0 is missing")


def test_bad_role_variable_fails_before_any_change(host: Host, tmp_path: Path) -> None:
    inventory = tmp_path / "bad.yml"
    inventory.write_text(host.inventory.read_text().replace("nvidia_driver_source: nvidia",
                                                            "nvidia_driver_source: rhel"))
    result, _ = host.configure(inventory=inventory)
    assert result.recap[host.target.name].changed == 0
    failure = result.failures[0]
    assert "nvidia_driver_source" in failure.message and "rhel" in failure.message


def test_check_mode_on_a_fresh_host_changes_nothing(boot_target: BootFn, nvidia_repo: str, agent_wheel: Path,
                                                    moto_server: Emulator, tmp_path: Path) -> None:
    target = boot_target()
    inventory = write_inventory(tmp_path / "hosts.yml", target, TEAM, "training",
                                host_vars(nvidia_repo, moto_server, free_port(), target.name))
    result = configure_nodes(ConfigureRequest(team=TEAM, check=True, wheel=agent_wheel, inventory=inventory,
                                              workspace=tmp_path))
    assert result.failures == [] and result.recap[target.name].changed > 0
    assert target.ssh("test -e /opt/gpufleet || test -e /etc/apt/sources.list.d/gpufleet-nvidia-cuda.sources",
                      check=False).returncode == 1
