"""Job isolation on this machine (the suite runs as root, as the agent does on a host through its
capabilities): a job started by the agent's launcher as the job user runs under that uid, in its own
session, and cannot read the agent's config; the IMDS firewall rule is recognised in nftables and
iptables output, and a real host without it refuses to run jobs with a one-line error.

The nftables rule itself is not loaded here: this machine's network namespace is the build host's.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from gpufleet.agent.training.isolation import (
    JobUser,
    can_switch_users,
    hand_back,
    hand_over,
    imds_blocked_for,
    require_imds_block,
    resolve_job_user,
)
from gpufleet.agent.training.process import JobProcess
from gpufleet.errors import UserInputError

NOBODY = pwd.getpwnam("nobody")
SYSTEM_PYTHON = "/usr/bin/python3"
JOB_USER = JobUser("nobody", NOBODY.pw_uid, NOBODY.pw_gid, isolated=True)

PROBE = """
import json, os
try:
    open(os.environ["AGENT_CONFIG"]).read()
    config = "read"
except PermissionError:
    config = "denied"
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "config": config,
                  "own_session": os.getsid(0) == os.getpid()}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists(),
                    reason="switching users needs root or the agent's capabilities; and a system python3")
def test_a_job_runs_as_the_job_user_in_its_own_session_and_cannot_read_the_agent_config() -> None:
    # Not pytest's tmp_path: its parents are root-only, so the job user could not reach its own code.
    tmp_path = Path(tempfile.mkdtemp(prefix="gpufleet-isolation-"))
    tmp_path.chmod(0o755)
    try:
        _run_probe(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _agent_config(top: Path) -> Path:
    """The agent's config under ``top``, closed to others as the Ansible role installs it."""
    config = top / "etc" / "agent.yaml"
    config.parent.mkdir(mode=0o750)
    config.write_text("team: {secret: true}\n")
    config.chmod(0o600)
    return config


def _run_as_job_user(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> dict[str, Any]:
    """Run ``argv`` to its end as the job user, through the agent's launcher: what its last line reports."""
    lines: list[str] = []
    proc = JobProcess(argv, env, cwd, log, lines.append, run_as=JOB_USER.popen_args())
    proc.start()
    while proc.poll() is None:
        time.sleep(0.05)
    proc.finish_output()
    assert proc.poll() == 0, lines
    seen: dict[str, Any] = json.loads(lines[-1])
    return seen


def _run_probe(tmp_path: Path) -> None:
    config = _agent_config(tmp_path)
    work = tmp_path / "work"
    (work / "code").mkdir(parents=True)
    script = work / "code" / "probe.py"
    script.write_text(PROBE)
    hand_over([work], JOB_USER)
    # A system interpreter: this suite's own lives under /root, which the job user may not enter (as it
    # should not); hosts install the agent's virtualenv world-readable under /opt/gpufleet.
    seen = _run_as_job_user([SYSTEM_PYTHON, str(script)], {"AGENT_CONFIG": str(config), "PATH": os.environ["PATH"]},
                            work / "code", tmp_path / "job.log")
    assert (seen["uid"], seen["gid"], seen["groups"]) == (NOBODY.pw_uid, NOBODY.pw_gid, [])
    assert seen["config"] == "denied" and seen["own_session"] is True
    hand_back([work], JOB_USER)
    assert script.stat().st_uid == os.geteuid()


NFT_RULESET = """table inet gpufleet_imds_guard {
	chain output {
		type filter hook output priority filter; policy accept;
		meta skuid "gpufleet-job" ip daddr 169.254.169.254 drop
	}
}"""
IPTABLES = "-P OUTPUT ACCEPT\n-A OUTPUT -d 169.254.169.254/32 -m owner --uid-owner 998 -j DROP\n"


def test_the_imds_rule_is_recognised_by_uid_or_name_in_nftables_and_iptables_output() -> None:
    job = JobUser("gpufleet-job", 998, 998, isolated=True)
    assert imds_blocked_for(job, NFT_RULESET) and imds_blocked_for(job, IPTABLES)
    other = JobUser("someone", 1001, 1001, isolated=True)
    assert not imds_blocked_for(other, NFT_RULESET) and not imds_blocked_for(other, IPTABLES)
    assert not imds_blocked_for(job, IPTABLES.replace("DROP", "ACCEPT"))
    assert not imds_blocked_for(job, IPTABLES.replace("169.254.169.254", "10.0.0.1"))


def test_a_host_without_the_imds_rule_refuses_to_run_jobs_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gpufleet.agent.training.isolation._ruleset", lambda: "")
    with pytest.raises(UserInputError) as info:
        require_imds_block(JobUser("gpufleet-job", 998, 998, isolated=True))
    (line,) = info.value.problems
    assert line.startswith("training.job_user: no firewall rule drops 'gpufleet-job' (uid 998) traffic to "
                           "169.254.169.254") and line.endswith("(run the gpufleet_agent Ansible role, which adds it)")
    require_imds_block(JobUser("me", os.geteuid(), os.getegid(), isolated=False))   # nothing to guard


def test_capabilities_decide_whether_the_agent_can_switch_users() -> None:
    if os.geteuid() == 0:
        pytest.skip("root can always switch")
    assert can_switch_users("CapEff:\t00000000000000e5\n")       # CHOWN, DAC_READ_SEARCH, KILL, SETGID, SETUID
    assert not can_switch_users("CapEff:\t0000000000000000\n")


def test_local_mode_runs_jobs_as_the_agents_user_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        user = resolve_job_user("gpufleet-job", local=True)
    assert (user.uid, user.isolated, user.popen_args()) == (os.geteuid(), False, {})
    assert "jobs run as the agent's own user" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to look the user up as a real host would")
def test_an_unknown_job_user_is_a_one_line_error() -> None:
    with pytest.raises(UserInputError, match=r"^training.job_user: no Unix user 'no-such-user' on this host"):
        resolve_job_user("no-such-user", local=False)
    assert subprocess.run(["id", "nobody"], capture_output=True).returncode == 0


READ_PROBE = """
import json, os, sys
def can(what, fn):
    try:
        fn()
        return "yes"
    except PermissionError:
        return "denied"
def write_into(folder):
    with open(os.path.join(folder, "planted.py"), "w") as f:
        f.write("x = 1")
import gpufleet_tiny_dep
site = os.path.dirname(gpufleet_tiny_dep.__file__)
print(json.dumps({
    "dependency": gpufleet_tiny_dep.GREETING, "prefix": sys.prefix,
    "code": can("code", lambda: open("train.py").read()),
    "input": can("input", lambda: open(os.environ["SM_CHANNEL_TRAIN"] + "/rows.csv").read()),
    "config": can("config", lambda: open(os.environ["AGENT_CONFIG"]).read()),
    "agent_file": can("agent_file", lambda: open(os.environ["AGENT_FILE"]).read()),
    "list_work_root": can("list", lambda: os.listdir(os.environ["WORK_ROOT"])),
    "change_environment": can("write", lambda: write_into(site)),
}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists(),
                    reason="switching users needs root or the agent's capabilities; and a system python3")
def test_under_the_agents_umask_the_job_user_reads_its_venv_code_and_inputs_but_not_the_agents_files(
        tmp_path: Path) -> None:
    from gpufleet.agent.requirements import ensure_environment
    from gpufleet.agent.training.isolation import open_work_root
    from gpufleet.agent.training.layout import JOB_DIRS, Layout
    from gpufleet.schema.pip_settings import PipSettings
    from tests.support.wheels import TINY_GREETING, TINY_PACKAGE, build_tiny_wheelhouse

    wheelhouse = build_tiny_wheelhouse(tmp_path)   # built as root, read by the agent (root) only
    top = Path(tempfile.mkdtemp(prefix="gpufleet-umask-"))
    top.chmod(0o755)   # stands for /, /opt: world-searchable
    previous = os.umask(0o027)   # the agent's service unit's UMask: pip and venv inherit it
    try:
        config = _agent_config(top)
        layout = Layout(top / "opt-ml")
        layout.root.mkdir()   # 0750 under the umask: closed to the job user until the agent opens it
        open_work_root(layout.root, JOB_USER)
        agent_file = layout.root / "agent-state.json"   # anything else the agent keeps in its work root
        agent_file.write_text("{}")
        layout.reset()
        (layout.code / "train.py").write_text(READ_PROBE)
        (layout.code / "requirements.txt").write_text(f"{TINY_PACKAGE}==1.0\n")
        layout.channel("train").mkdir(parents=True)
        (layout.channel("train") / "rows.csv").write_text("1,2\n")
        env = ensure_environment(layout.code / "requirements.txt", layout.root / "envs", SYSTEM_PYTHON,
                                 PipSettings(wheelhouse=str(wheelhouse)), reader_gid=JOB_USER.gid)
        hand_over([layout.root / d for d in JOB_DIRS], JOB_USER)
        environ = {"PATH": os.environ["PATH"], "AGENT_CONFIG": str(config), "AGENT_FILE": str(agent_file),
                   "WORK_ROOT": str(layout.root), "SM_CHANNEL_TRAIN": str(layout.channel("train"))}
        seen = _run_as_job_user([str(env / "bin" / "python"), "train.py"], environ, layout.code, top / "job.log")
        assert (seen["dependency"], seen["prefix"]) == (TINY_GREETING, str(env))
        assert (seen["code"], seen["input"]) == ("yes", "yes")
        assert seen == {**seen, "config": "denied", "agent_file": "denied", "list_work_root": "denied",
                        "change_environment": "denied"}
        world_readable = [p for p in [env, *env.rglob("*")] if not p.is_symlink() and p.stat().st_mode & 0o007]
        assert world_readable == [], world_readable[:5]
        job_tree = [layout.root / d for d in JOB_DIRS]
        assert not any(p.stat().st_mode & 0o007 for top_dir in job_tree for p in [top_dir, *top_dir.rglob("*")])
    finally:
        os.umask(previous)
        shutil.rmtree(top)
