"""The Terraform runner reads stdout and stderr at once: a provider that floods stderr cannot block it.

A stand-in ``terraform`` (a small script, via $TERRAFORM_BINARY) writes 1 MB to stderr before and while
it writes its -json event stream. The pipe holds 64 KB, so a runner that reads stderr only after stdout
closes would wait on stdout while the stand-in waits on stderr, forever.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from gpufleet.terraform.runner import RunResult, StackRunner

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
