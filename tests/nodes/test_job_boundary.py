"""The job boundary on a real host: a Debian host booted with systemd-nspawn and configured by the
gpufleet_agent role (gpu-node.yml, tag ``agent``), IMDS guard on. A job script running as the job user
can read neither the instance metadata service's credentials nor the agent's config; root can.

The guard is an nftables rule, so this host gets its own network namespace (``--private-network``): the
rule, the IMDS address and the fake IMDS server all live there, never on this machine's network. The
agent's install needs the network (apt, PyPI), so the host boots twice: first on the shared network to
install the agent without the guard, then, from the same disk, in its own namespace where the role runs
again with the guard on (Ansible's controller enters that namespace to reach the host's sshd).
Stand-in: the fake IMDS (a few lines below) serves a fake host-role credential on 169.254.169.254:80.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.nodes import nspawn
from tests.nodes.conftest import BootFn, write_inventory

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
FAKE_KEY = "ASIAFAKEHOSTROLEKEY"
HOST_ROLE = "gpufleet-host-role"
PROBE_SOURCE = "/usr/local/share/gpufleet-job-probe.py"
PROBE_PATH = "/opt/ml/code/probe.py"   # where the agent puts a job's code, handed over to the job user

FAKE_IMDS = f"""
import http.server, json
CREDS = "/latest/meta-data/iam/security-credentials/"
class Imds(http.server.BaseHTTPRequestHandler):
    def _send(self, body):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_PUT(self):   # IMDSv2 token
        self._send("fake-token")
    def do_GET(self):
        if self.path == CREDS:
            self._send("{HOST_ROLE}")
        elif self.path == CREDS + "{HOST_ROLE}":
            self._send(json.dumps({{"Code": "Success", "AccessKeyId": "{FAKE_KEY}", "SecretAccessKey": "s",
                                    "Token": "t", "Expiration": "2099-01-01T00:00:00Z"}}))
        else:
            self.send_error(404)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("169.254.169.254", 80), Imds).serve_forever()
"""

# What job code would try: the host role's credentials through IMDSv2, the agent's config on disk and
# systemd's copy of it; and, as a control, a plain local connection (the rule drops IMDS, not everything).
PROBE = """
import json, os, socket, sys, urllib.request
def imds():
    try:
        put = urllib.request.Request("http://169.254.169.254/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        token = urllib.request.urlopen(put, timeout=3).read().decode()
        base = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
        get = lambda path: urllib.request.urlopen(urllib.request.Request(
            base + path, headers={"X-aws-ec2-metadata-token": token}), timeout=3).read().decode()
        return json.loads(get(get("")))["AccessKeyId"]
    except OSError as exc:   # urllib wraps the socket's own error in URLError.reason
        return "unreachable: " + type(getattr(exc, "reason", exc)).__name__
def read(path):
    try:
        open(path).read()
        return "read"
    except PermissionError:   # the file's mode, or a folder on the way the user may not search
        return "denied"
    except FileNotFoundError:
        return "absent"
def listing(path):
    try:
        os.listdir(path)
        return "listed"
    except PermissionError:
        return "denied"
def local(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({"uid": os.getuid(), "imds": imds(), "config": read("/etc/gpufleet/agent.yaml"),
                  "service_copy": read("/run/credentials/gpufleet-agent.service/agent.yaml"),
                  "work_root": listing("/opt/ml"),
                  "local": local(int(sys.argv[1]))}))
"""

AGENT_CHECK = ("from gpufleet.agent.training.isolation import imds_blocked_for, resolve_job_user; "
               "print(imds_blocked_for(resolve_job_user('gpufleet-job', local=False)))")


@dataclass
class GuardedHost:
    target: nspawn.Target
    playbook: subprocess.CompletedProcess[str]


def _runtime() -> dict[str, object]:
    """A team runtime document for the agent config (only its schema is checked on the host)."""
    return {"platform": "nodes", "team": "trust", "region": "us-east-1", "queue_url": "https://q", "dlq_url": "d",
            "buckets": {b: f"nodes-trust-{b}" for b in ("data", "artifacts", "checkpoints", "capture", "logs")},
            "tables": {t: f"nodes-trust-{t}" for t in ("jobs", "models", "endpoints", "approvals")},
            "training": {"asg": "nodes-trust-training"}}


def _configure(target: nspawn.Target, work: Path, wheel: Path, guard: bool) -> subprocess.CompletedProcess[str]:
    """gpu-node.yml's agent role, run from a controller in the target's network namespace when it has one."""
    host_vars: dict[str, object] = {"gpufleet_agent_wheel": str(wheel), "gpufleet_agent_extras": ["agent"],
                                    "gpufleet_agent_health_port": 0, "gpufleet_agent_imds_guard": guard}
    if guard:   # a config for the role to install (the agent itself never gets to run a job here)
        host_vars.update(gpufleet_agent_team_runtime=_runtime(),
                         gpufleet_agent_local={"aws_endpoint_url": "http://127.0.0.1:9", "instance_id": "i-trust"})
    inventory = write_inventory(work / f"hosts-{target.name}.yml", target, "trust", "training", host_vars)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "playbooks" / "ansible.cfg"),
           "ANSIBLE_ROLES_PATH": str(REPO / "playbooks" / "roles"), "ANSIBLE_SSH_ARGS": "-o ControlMaster=no"}
    argv = ["ansible-playbook", "-i", str(inventory), str(REPO / "playbooks" / "gpu-node.yml"), "--tags", "agent"]
    return subprocess.run(target.in_netns(argv), env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def guarded_host(boot_target: BootFn, agent_wheel: Path, ssh_key: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedHost]:
    work = tmp_path_factory.mktemp("job-boundary")
    installing = boot_target()   # shared network: apt and PyPI reachable, so no guard here
    installed = _configure(installing, work, agent_wheel, guard=False)
    assert installed.returncode == 0, installed.stdout[-4000:]
    installing.ssh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables", timeout=300)
    nspawn.shutdown(installing)
    target = nspawn.boot(nspawn.ROOTFS_CACHE, work / "guarded", ssh_key, "gpufleet-guarded", private_network=True,
                         above=installing.upper)
    imds: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(target.in_netns(["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"]), check=True)
        imds = subprocess.Popen(target.in_netns([sys.executable, "-c", FAKE_IMDS]), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        (target.root / PROBE_SOURCE.lstrip("/")).write_text(PROBE)
        configured = _configure(target, work, agent_wheel, guard=True)
        # The job's code as the agent leaves it: in the work root's code folder, handed to the job user.
        target.ssh(f"install -d -o gpufleet-job -g gpufleet-job -m 0750 {Path(PROBE_PATH).parent} && "
                   f"install -o gpufleet-job -g gpufleet-job -m 0640 {PROBE_SOURCE} {PROBE_PATH}")
        yield GuardedHost(target, configured)
    finally:
        if imds is not None:
            imds.terminate()
            imds.wait(timeout=10)
        nspawn.shutdown(target)


def _probe(host: GuardedHost, as_job_user: bool) -> dict[str, object]:
    run_as = "setpriv --reuid=gpufleet-job --regid=gpufleet-job --clear-groups " if as_job_user else ""
    done = host.target.ssh(f"cd / && {run_as}python3 {PROBE_PATH} {host.target.port}", check=False, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    seen: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_the_role_loads_the_imds_guard_in_the_hosts_own_network_namespace(guarded_host: GuardedHost) -> None:
    assert guarded_host.playbook.returncode == 0, guarded_host.playbook.stdout[-4000:]
    ruleset = guarded_host.target.ssh("nft list table inet gpufleet_imds_guard").stdout
    uid = guarded_host.target.ssh("id -u gpufleet-job").stdout.strip()
    assert f"meta skuid {uid} ip daddr 169.254.169.254 drop" in ruleset
    assert "hook forward" in ruleset
    assert guarded_host.target.ssh("systemctl is-enabled gpufleet-imds-guard").stdout.strip() == "enabled"
    # The agent's own start check sees the rule, so it would run jobs on this host.
    check = guarded_host.target.ssh(f"/opt/gpufleet/venv/bin/python -c \"{AGENT_CHECK}\"")
    assert check.stdout.strip() == "True"
    # This machine's own network namespace never got the rule (nor the IMDS address).
    if shutil.which("nft"):
        assert "gpufleet_imds_guard" not in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                                           text=True, check=False).stdout
    assert "169.254.169.254" not in subprocess.run(["ip", "addr"], capture_output=True, text=True).stdout


def test_root_reads_the_fake_imds_credential_and_the_agent_config(guarded_host: GuardedHost) -> None:
    seen = _probe(guarded_host, as_job_user=False)
    assert (seen["uid"], seen["imds"], seen["config"], seen["local"]) == (0, FAKE_KEY, "read", "connected")
    assert seen["work_root"] == "listed"


def test_a_job_script_as_the_job_user_reads_neither_imds_credentials_nor_the_agent_config(
        guarded_host: GuardedHost) -> None:
    seen = _probe(guarded_host, as_job_user=True)
    assert seen["uid"] != 0
    # Dropped by the rule: no answer at all, so the client times out (refused would mean no server there).
    assert seen["imds"] in ("unreachable: TimeoutError", "unreachable: timeout"), seen
    assert seen["config"] == "denied" and seen["service_copy"] in ("denied", "absent"), seen
    assert seen["local"] == "connected", "the rule drops IMDS only, not the job user's other traffic"
    # It reached its code through the work root, which it may search but not list (the role's 0710).
    assert seen["work_root"] == "denied"
    assert guarded_host.target.ssh("stat -c %U:%G:%a /opt/ml").stdout.strip() == "gpufleet:gpufleet-job:710"
    assert yaml.safe_load(guarded_host.target.ssh("cat /etc/gpufleet/agent.yaml").stdout)["training"] == {
        "job_user": "gpufleet-job"}
