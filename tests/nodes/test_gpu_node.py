"""Day 0 then day 2 on one booted Debian host (systemd-nspawn): the Packer bake of the GPU AMI runs
gpu-node.yml on it, then `gpufleet nodes configure` gives it a team and starts the agent.

Real: Packer 1.6.6, Ansible, ssh, apt, systemd, pip (the agent's deps come from PyPI), the agent, moto.
Stand-ins: moto's EC2 (the builder instance is the nspawn host); NVIDIA's repositories are unreachable
here, so a signed repository on 127.0.0.1 serves packages with NVIDIA's names and versions
(tests/nodes/aptrepo.py); there is no GPU, so the GPU checks take their no-GPU path (and fail where a
GPU is required).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import gpufleet.cli.main  # noqa: F401  (first: once main registers nodes_cmd, this order avoids a cycle)
from gpufleet.cli.nodes_cmd import nodes
from gpufleet.local.emulator import Emulator
from gpufleet.nodes.configure import ConfigureRequest, configure_nodes
from gpufleet.nodes.runner import PlaybookResult
from gpufleet.ports import free_port
from tests.nodes import aptrepo
from tests.nodes.bake import DRIVER, Bake, bake
from tests.nodes.conftest import BootFn, nvidia_repo_vars, write_inventory
from tests.nodes.nspawn import Target
from tests.support.aws import create_team_resources

pytestmark = pytest.mark.slow
TEAM = "ml-research"


@dataclass(frozen=True)
class Stage:
    """A playbook run and what the host looked like right after it."""

    result: PlaybookResult
    changed_tasks: list[str]
    untouched: bool = False         # check mode: nothing of gpufleet's on the host


@dataclass
class Host:
    target: Target
    inventory: Path
    runtime: Path
    wheel: Path
    health_port: int
    fresh_check: Stage
    bake: Bake
    baked_units: list[str]          # is-enabled of gpufleet-agent.path and .service after the bake
    baked_agent: str                # is-active of gpufleet-agent after the bake
    day_two: Stage

    def configure(self, check: bool = False, inventory: Path | None = None, build_wheel: bool = False) -> Stage:
        return configure(inventory or self.inventory, None if build_wheel else self.wheel, self.runtime, check)


def configure(inventory: Path, wheel: Path | None, runtime: Path | None, check: bool = False) -> Stage:
    """Run the playbook through the library (what the CLI calls), recording the changed tasks."""
    changed: list[str] = []
    request = ConfigureRequest(team=TEAM, role="training", check=check, inventory=inventory, wheel=wheel,
                               runtime=runtime, workspace=inventory.parent)
    result = configure_nodes(request, lambda e: changed.append(e.task) if e.status == "changed" else None)
    return Stage(result, changed)


def host_vars(repo_url: str, emu: Emulator, health_port: int, name: str) -> dict[str, object]:
    return {**nvidia_repo_vars(repo_url),
            # torch (the `training` extra) is a multi-GB download: the agent starts without it.
            "gpufleet_agent_extras": ["agent"],
            # The host's root is an overlayfs here, which podman's overlay storage cannot stack on.
            "container_runtime_storage_driver": "vfs",
            "gpufleet_agent_health_port": health_port,
            "gpufleet_agent_local": {"aws_endpoint_url": emu.endpoint, "instance_id": f"i-{name}"}}


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(nodes, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def host(boot_target: BootFn, nvidia_repo: str, agent_wheel: Path, moto_server: Emulator,
         tmp_path_factory: pytest.TempPathFactory) -> Host:
    """One fresh host: a check-mode run, the AMI bake, then the day-2 run that gives it its team."""
    work = tmp_path_factory.mktemp("converge")
    (work / "runtime.json").write_text(create_team_resources(moto_server, platform="nodes", team=TEAM).to_json())
    target = boot_target()
    port = free_port()
    inventory = write_inventory(work / "hosts.yml", target, TEAM, "training",
                                host_vars(nvidia_repo, moto_server, port, target.name))
    runtime = work / "runtime.json"
    check = configure(inventory, agent_wheel, None, check=True)
    untouched = target.ssh("test -e /opt/gpufleet || test -e /etc/apt/sources.list.d/gpufleet-nvidia-cuda.sources",
                           check=False).returncode == 1
    baked = bake(moto_server, target, nvidia_repo, agent_wheel, work)
    assert baked.rc == 0, baked.output
    units = target.ssh("systemctl is-enabled gpufleet-agent.path gpufleet-agent").stdout.split()
    active = target.ssh("systemctl is-active gpufleet-agent", check=False).stdout.strip()
    day_two = configure(inventory, agent_wheel, runtime)
    print(f"\nfresh check mode {check.result.seconds:.0f} s, bake {baked.seconds:.0f} s, "
          f"day-2 configure {day_two.result.seconds:.0f} s (changed {day_two.result.changed})")
    return Host(target, inventory, runtime, agent_wheel, port, Stage(check.result, check.changed_tasks, untouched),
                baked, units, active, day_two)


def test_check_mode_on_a_fresh_host_fails_nothing_and_changes_nothing(host: Host) -> None:
    stage = host.fresh_check
    assert stage.result.failures == [] and stage.result.recap[host.target.name].changed > 0
    assert stage.untouched


def test_bake_against_moto_produces_an_available_ami_named_and_tagged_for_the_stacks(host: Host) -> None:
    images = host.bake.images
    assert len(images) == 1 and images[0]["State"] == "available"
    assert images[0]["Name"].startswith(f"gpufleet-gpu-nvidia-{DRIVER}-")   # stacks look up gpufleet-gpu-*
    tags = {t["Key"]: t["Value"] for t in images[0]["Tags"]}
    assert tags["gpufleet:driver"] == DRIVER and tags["gpufleet:base-ami"] == host.bake.base_ami


def test_baked_host_has_the_agent_enabled_and_waiting_for_its_config(host: Host) -> None:
    assert host.baked_units == ["enabled", "enabled"] and host.baked_agent == "inactive"


def test_day_two_run_on_the_baked_host_changes_only_the_agent_config_and_start(host: Host) -> None:
    assert host.day_two.result.failures == []
    assert set(host.day_two.changed_tasks) == {"Write the agent config", "Restart gpufleet-agent",
                                               "Enable the agent (started once it has a config)"}


def test_second_run_changes_nothing(host: Host) -> None:
    # The CLI's own wheel build this time: an unchanged checkout must give a byte-identical wheel.
    stage = host.configure(build_wheel=True)
    print(f"\nsecond run {stage.result.seconds:.0f} s, changed={stage.result.changed}")
    assert stage.result.failures == []
    assert stage.result.recap[host.target.name].changed == 0, stage.changed_tasks


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


def test_the_agent_reaches_the_root_podman_service_through_its_groups_socket(host: Host) -> None:
    """The hardened agent (its own user, no new privileges, no namespaces) cannot run rootless podman: it
    joins the group the playbook opens the root podman service's socket to, and runs `podman --remote`."""
    target = host.target
    assert target.ssh("systemctl is-enabled podman.socket").stdout.strip() == "enabled"
    assert target.ssh("stat -c %G:%a /run/podman/podman.sock").stdout.strip() == "gpufleet-containers:660"
    gid = target.ssh("getent group gpufleet-containers").stdout.split(":")[2]
    pid = target.ssh("systemctl show -p MainPID --value gpufleet-agent").stdout.strip()
    assert gid in target.ssh(f"grep ^Groups: /proc/{pid}/status").stdout.split()[1:]
    served = target.ssh(f"HOME=/var/lib/gpufleet setpriv --reuid gpufleet --regid gpufleet --groups {gid} "
                        "podman --remote --url unix:///run/podman/podman.sock version --format '{{.Server.Version}}'",
                        check=False)
    assert served.returncode == 0 and served.stdout.strip().startswith("4."), served.stderr


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
    code, output = cli("configure", "--team", TEAM, "--tags", "verify", "--inventory", str(inventory),
                       "--wheel", str(host.wheel), "--runtime", str(host.runtime))
    assert code == 1
    assert f"FAILED {host.target.name} · Fail where a GPU is required but absent" in output   # streamed
    assert "recap" in output and host.target.name in output.split("recap")[-1]              # per-host recap
    error = output.strip().splitlines()[-1]
    assert error.startswith(f"error: configure {host.target.name}: {host.target.name} failed at task "
                            "'Fail where a GPU is required but absent': no GPU: /dev/nvidia0 is missing")


def test_bad_role_variable_fails_before_any_change(host: Host, tmp_path: Path) -> None:
    inventory = tmp_path / "bad.yml"
    inventory.write_text(host.inventory.read_text().replace("nvidia_driver_source: nvidia",
                                                            "nvidia_driver_source: rhel"))
    result = host.configure(inventory=inventory).result
    assert result.recap[host.target.name].changed == 0
    failure = result.failures[0]
    assert "nvidia_driver_source" in failure.message and "rhel" in failure.message
