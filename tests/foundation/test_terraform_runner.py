"""The Terraform runner reads stdout and stderr at once: a provider that floods stderr cannot block it.

A stand-in ``terraform`` (a small script, via $TERRAFORM_BINARY) writes 1 MB to stderr before and while
it writes its -json event stream. The pipe holds 64 KB, so a runner that reads stderr only after stdout
closes would wait on stdout while the stand-in waits on stderr, forever.

A run that finds the state locked says so at once, naming the holder from the backend's lock record, rather
than waiting out its lock timeout in silence.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from gpufleet.errors import RuntimeFailure
from gpufleet.terraform.runner import LOCK_WAIT, TERRAFORM_GOGC, RunResult, StackRunner, lock_wait_message

STAND_IN = """\
import json, os, sys
open(sys.argv[0] + ".pid", "w").write(str(os.getpid()))
noise = "2026-12-02T10:00:00.000Z [DEBUG] provider.terraform-provider-aws: chatty line\\n"
sys.stderr.write(noise * (512 * 1024 // len(noise) + 1))   # half a megabyte before any event
sys.stderr.flush()
print(json.dumps({"type": "version", "terraform": "1.11.4"}), flush=True)
sys.stderr.write(noise * (512 * 1024 // len(noise) + 1))   # and half while the events stream
sys.stderr.flush()
print(json.dumps({"type": "change_summary", "changes": {"add": 3, "change": 1, "remove": 0}}), flush=True)
"""
HANG_GUARD_S = 60    # not a speed bound: the fixed runner takes well under a second, the old one forever


@pytest.fixture
def flooding_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "terraform"
    script.write_text(f"#!{sys.executable}\n{STAND_IN}")
    script.chmod(0o755)
    monkeypatch.setenv("TERRAFORM_BINARY", str(script))
    return script


def test_a_megabyte_of_stderr_does_not_block_the_event_stream(flooding_terraform: Path, tmp_path: Path) -> None:
    stack_dir = tmp_path / "stacks" / "team-vision"
    stack_dir.mkdir(parents=True)
    runner = StackRunner(stack_dir, tmp_path / "workspace")
    results: list[RunResult] = []
    events: list[str] = []
    worker = threading.Thread(target=lambda: results.append(runner.apply(lambda _s, e: events.append(e["type"]))),
                              daemon=True)
    worker.start()
    worker.join(HANG_GUARD_S)
    if worker.is_alive():   # unblock the stand-in so the test run itself ends
        pid_file = Path(f"{flooding_terraform}.pid")
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        pytest.fail("the runner hung: stderr filled its pipe while stdout was being read")
    assert events == ["version", "change_summary"]
    assert (results[0].added, results[0].changed, results[0].removed) == (3, 1, 0)


LOCK_RECORD = {"ID": "0b7c1e2a-33be-9ed6-336f-419a142c7286", "Operation": "OperationTypeApply", "Info": "",
               "Who": "ana@ci-runner-3", "Version": "1.11.4", "Created": "2026-12-02T14:53:35.64057122Z"}


def _stack_with_backend(tmp_path: Path, backend: dict[str, object]) -> Path:
    stack_dir = tmp_path / "stacks" / "platform"
    stack_dir.mkdir(parents=True)
    (stack_dir / "cdk.tf.json").write_text(json.dumps(
        {"terraform": {"backend": backend}, "output": {"ready": {"value": True}}}))
    return stack_dir


def test_a_deploy_that_finds_the_state_locked_says_who_holds_it_and_how_long_it_waits(tmp_path: Path) -> None:
    """Held as Terraform's local backend holds it: a POSIX lock on the state file, and the lock record
    beside it (the format a real ``terraform apply`` writes)."""
    state = tmp_path / "state" / "platform.tfstate"
    state.parent.mkdir()
    stack_dir = _stack_with_backend(tmp_path, {"local": {"path": str(state)}})
    runner = StackRunner(stack_dir, tmp_path / "workspace", lock_timeout_s=1)
    runner.init()
    state.write_text("")
    events: list[dict[str, object]] = []
    with state.open("r+") as held:
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (state.parent / ".platform.tfstate.lock.info").write_text(json.dumps({**LOCK_RECORD, "Path": str(state)}))
        with pytest.raises(RuntimeFailure, match="the state is locked by ana@ci-runner-3"):
            runner.plan(lambda _stack, event: events.append(event))
    (waiting,) = [e for e in events if e["type"] == LOCK_WAIT]
    assert lock_wait_message(waiting) == (
        "the state is locked by ana@ci-runner-3 (apply since 2026-12-02 14:53:35 UTC, "
        "lock 0b7c1e2a-33be-9ed6-336f-419a142c7286); waiting up to 1 s for the state lock")


def test_the_holder_of_an_s3_state_lock_is_read_from_its_tflock_object(tmp_path: Path) -> None:
    stack_dir = _stack_with_backend(tmp_path, {"s3": {"bucket": "acme-tfstate", "key": "gpufleet/platform.tfstate",
                                                      "region": "us-east-1", "use_lockfile": True}})
    runner = StackRunner(stack_dir, tmp_path / "workspace")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="acme-tfstate")
        assert runner.lock_holder() is None, "no lock, no holder"
        s3.put_object(Bucket="acme-tfstate", Key="gpufleet/platform.tfstate.tflock", Body=json.dumps(LOCK_RECORD))
        assert runner.lock_holder() == LOCK_RECORD


def test_a_lock_wait_whose_holder_is_unknown_still_says_it_waits() -> None:
    assert lock_wait_message({"type": LOCK_WAIT, "lock": None, "lock_timeout_s": 60}) == (
        "waiting up to 60 s for the state lock")


ENV_PROBE = """\
import json, os, sys
open(sys.argv[0] + ".gogc", "w").write(os.environ.get("GOGC", "unset"))
print(json.dumps({"type": "version", "terraform": "1.11.4"}), flush=True)
"""


@pytest.mark.parametrize(("users_gogc", "seen"), [(None, TERRAFORM_GOGC), ("100", "100")])
def test_terraform_and_its_providers_get_the_go_collector_target_unless_the_user_set_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users_gogc: str | None, seen: str) -> None:
    """Go reads GOGC at start; Terraform passes its environment to the providers it starts."""
    script = tmp_path / "terraform"
    script.write_text(f"#!{sys.executable}\n{ENV_PROBE}")
    script.chmod(0o755)
    monkeypatch.setenv("TERRAFORM_BINARY", str(script))
    if users_gogc is None:
        monkeypatch.delenv("GOGC", raising=False)
    else:
        monkeypatch.setenv("GOGC", users_gogc)
    stack_dir = tmp_path / "stacks" / "platform"
    stack_dir.mkdir(parents=True)
    StackRunner(stack_dir, tmp_path / "workspace").apply()
    assert Path(f"{script}.gogc").read_text() == seen
