"""Run ``terraform init/plan/apply/destroy/output`` in one synthesized stack directory.

Terraform's ``-json`` machine-readable UI is streamed as events to a callback, so the CLI can show
progress while the library stays free of display code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gpufleet.aws import AWS_ERRORS, AwsClients
from gpufleet.errors import Interrupted, RuntimeFailure
from gpufleet.terraform.cliconfig import write_cli_config

Event = dict[str, Any]
# Go's collector target for Terraform and the AWS provider it starts. The provider (5.100.0) builds its whole
# schema at every start, and Terraform starts it 3-5 times per plan, apply or destroy: about 3.4 CPU-s each on
# these 2-core machines, 2.5 CPU-s with GOGC=400. Measured 2026-12-03 on the demo and stacks end-to-end tests
# (47 provider starts): provider CPU 167 -> 115 s, Terraform's own 62 -> 51 s; the largest provider's peak RSS
# 530 -> 705 MB. Higher buys nothing: one provider start (`terraform providers schema`) took 3.4 CPU-s at
# GOGC=100, 2.6 at 400, 2.8 at 800 and 2.6 with the collector off (peak RSS 320, 440, 600, 730 MB). A GOGC
# already in the environment wins.
# One provider per command instead (Terraform's TF_REATTACH_PROVIDERS to a `-debug` provider serving every
# walk) saved little: a one-resource apply 11.5 -> 9.5 CPU-s, 10.2 -> 8.2 s (3 runs each; the one provider
# still used 8 CPU-s). And it breaks: a second ConfigureProvider in one process fails when AWS_CA_BUNDLE is
# set, and one process would serve every aliased configuration (a team stack's DR-region provider) with one
# client.
TERRAFORM_GOGC = "400"
EventSink = Callable[[str, Event], None]  # (stack, event)


@dataclass
class RunResult:
    stack: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    lock: dict[str, str] | None = None   # who holds the state lock, when Terraform could not take it

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def terraform_binary() -> str:
    binary = shutil.which(os.environ.get("TERRAFORM_BINARY", "terraform"))
    if binary is None:
        raise RuntimeFailure("terraform", "the terraform CLI is not on PATH",
                             "install Terraform >= 1.5 or set TERRAFORM_BINARY")
    return binary


class StackRunner:
    """Terraform over one synthesized stack directory (``cdktf.out/stacks/<stack>``)."""

    def __init__(self, stack_dir: Path, workspace: Path, extra_env: dict[str, str] | None = None,
                 lock_timeout_s: int = 60) -> None:
        self.stack_dir, self.stack = stack_dir, stack_dir.name
        # How long to wait for a state lock another run holds (another deploy on the same state) before
        # failing with who holds it.
        self.lock_timeout_s = lock_timeout_s
        self.lock_timeout = f"-lock-timeout={lock_timeout_s}s"
        self.env = {"GOGC": TERRAFORM_GOGC, **os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
                    "TF_CLI_CONFIG_FILE": str(write_cli_config(workspace)),
                    "CHECKPOINT_DISABLE": "1", **(extra_env or {})}
        self.binary = terraform_binary()
        self._proc: subprocess.Popen[str] | None = None
        self._interrupted = False
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        """Have Terraform stop now, as its own Ctrl-C does: it saves the state and releases the lock, but its
        graceful stop cancels the AWS calls in flight, so a resource being created may exist unrecorded."""
        with self._lock:
            self._interrupted = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)

    def _run(self, *args: str, step: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *args], cwd=self.stack_dir, env=self.env, text=True,
                              capture_output=True, check=False, start_new_session=True)
        if proc.returncode not in (0, 2) or (proc.returncode == 2 and step != "plan"):
            raise RuntimeFailure(f"{step} {self.stack}", _last_error(proc.stderr or proc.stdout),
                                 f"fix it and rerun; logs: terraform {' '.join(args[:1])} in {self.stack_dir}")
        return proc

    def init(self) -> None:
        self._run("init", "-input=false", "-no-color", "-reconfigure", step="init")

    def _stream(self, args: list[str], step: str, sink: EventSink | None) -> RunResult:
        result = RunResult(self.stack)
        # Its own session: a terminal's Ctrl-C reaches gpufleet alone, which decides when Terraform stops
        # (see ``interrupt`` and gpufleet.deploy.Interruption).
        with self._lock:
            if self._interrupted:
                raise Interrupted(f"{step} {self.stack}", "interrupted before Terraform started",
                                  f"rerun `gpufleet {step}` to finish")
            proc = self._proc = subprocess.Popen(
                [self.binary, *args, "-json"], cwd=self.stack_dir, env=self.env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        with proc:
            assert proc.stdout is not None and proc.stderr is not None
            # stderr drains on its own thread: a provider that fills the pipe (TF_LOG, a panic) would
            # otherwise block Terraform while we wait for stdout to close.
            stderr_chunks: list[str] = []
            drain = threading.Thread(target=_read_all, args=(proc.stderr, stderr_chunks),
                                     name=f"terraform-stderr-{self.stack}", daemon=True)
            drain.start()
            for line in proc.stdout:
                event = _parse(line)
                if event is None:
                    continue
                if event.get("type") == LOCK_WAIT:
                    # Terraform says only that it waits; who holds the lock is in the backend's lock record.
                    event = {**event, "lock": self.lock_holder(), "lock_timeout_s": self.lock_timeout_s}
                _collect(event, result)
                if sink:
                    sink(self.stack, event)
            drain.join()
            stderr = "".join(stderr_chunks)
        ok = proc.returncode == 0 or (step == "plan" and proc.returncode == 2)
        if not ok and result.lock is not None:
            raise self._locked(step, result.lock)
        if not ok and self._interrupted:
            raise Interrupted(f"{step} {self.stack}", "Terraform stopped at once (Ctrl-C twice); it saved the state "
                              "and released the lock", f"rerun `gpufleet {step}`; if it fails with a resource that "
                              "already exists, that one was being created when Terraform stopped: import it "
                              f"(`terraform import` in {self.stack_dir}) or delete it, and rerun")
        if not ok:
            detail = "; ".join(result.errors) or _last_error(stderr)
            raise RuntimeFailure(f"{step} {self.stack}", detail,
                                 f"fix the cause, then rerun (state is kept; `gpufleet {step} {self.stack}`)")
        return result

    def _locked(self, step: str, lock: dict[str, str]) -> RuntimeFailure:
        return RuntimeFailure(
            f"{step} {self.stack}",
            f"the state is locked by {describe_lock(lock, 'state ' + lock.get('Path', '?'))}",
            "another deploy is running on this state: wait for it to end and rerun; if none is (it was killed), "
            f"release the lock with `terraform force-unlock -force {lock.get('ID', '?')}` in {self.stack_dir} "
            "and rerun")

    def lock_holder(self) -> dict[str, str] | None:
        """The lock record of this stack's state (ID, Operation, Who, Created, ...), as the backend keeps it
        while Terraform holds the lock: the local backend's ``.<state>.lock.info`` beside the state, the S3
        backend's ``<key>.tflock`` object (``use_lockfile``). None when there is none or it cannot be read.

        A killed Terraform leaves its local record behind, though the OS released its lock: so ask only
        while a Terraform is waiting for the lock (``LOCK_WAIT``), when the record is the holder's."""
        try:
            backend = json.loads((self.stack_dir / "cdk.tf.json").read_text())["terraform"]["backend"]
            if "s3" in backend:
                s3 = backend["s3"]
                body = AwsClients.create(s3["region"]).client("s3").get_object(
                    Bucket=s3["bucket"], Key=f"{s3['key']}.tflock")["Body"].read()
            else:
                state = self.stack_dir / backend.get("local", {}).get("path", "terraform.tfstate")
                body = state.with_name(f".{state.name.removeprefix('.')}.lock.info").read_bytes()
            record = json.loads(body)
        except (OSError, ValueError, KeyError, TypeError, *AWS_ERRORS):
            return None
        return {k: str(v) for k, v in record.items()} if isinstance(record, dict) else None

    def plan(self, sink: EventSink | None = None, destroy: bool = False, out: Path | None = None) -> RunResult:
        """``out`` saves the plan (for ``terraform show -json``, e.g. a policy gate)."""
        args = ["plan", "-input=false", self.lock_timeout, "-detailed-exitcode"]
        args += (["-destroy"] if destroy else []) + ([f"-out={out}"] if out else [])
        return self._stream(args, "plan", sink)

    def apply(self, sink: EventSink | None = None) -> RunResult:
        return self._stream(["apply", "-input=false", "-auto-approve", self.lock_timeout], "deploy", sink)

    def destroy(self, sink: EventSink | None = None) -> RunResult:
        return self._stream(["apply", "-destroy", "-input=false", "-auto-approve", self.lock_timeout],
                            "destroy", sink)

    def outputs(self) -> dict[str, Any]:
        proc = self._run("output", "-json", "-no-color", step="output")
        return {k: v.get("value") for k, v in json.loads(proc.stdout or "{}").items()}


def _read_all(stream: IO[str], into: list[str]) -> None:
    into.append(stream.read())


def _parse(line: str) -> Event | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _collect(event: Event, result: RunResult) -> None:
    kind = event.get("type")
    if kind == "change_summary":
        changes = event.get("changes", {})
        result.added, result.changed = changes.get("add", 0), changes.get("change", 0)
        result.removed = changes.get("remove", 0)
    elif kind == "diagnostic" and event.get("diagnostic", {}).get("severity") == "error":
        diag = event["diagnostic"]
        if diag.get("summary") == LOCK_ERROR:
            result.lock = _lock_info(diag.get("detail", ""))
        where = diag.get("address") or diag.get("range", {}).get("filename", "")
        result.errors.append(" ".join(p for p in (where + ":" if where else "", diag.get("summary", ""),
                                                   diag.get("detail", "")) if p).strip())


LOCK_ERROR = "Error acquiring the state lock"
# The event Terraform's -json UI sends when taking the state lock takes over 400 ms: another run holds it
# (or, rarely, a remote backend is slow to answer).
LOCK_WAIT = "state_lock_acquire"


def describe_lock(lock: dict[str, str], *more: str) -> str:
    """``root@host (apply since 2026-12-02 14:53:35 UTC, lock <ID>)``: who holds a state lock, from a lock
    record (``StackRunner.lock_holder``) or the Lock Info of Terraform's lock error."""
    operation = lock.get("Operation", "").removeprefix("OperationType").lower() or "run"
    # "2026-12-02 14:53:35.64057122 +0000 UTC" (the error) or "2026-12-02T14:53:35.64057122Z" (the record):
    # to the second, both UTC.
    created = lock.get("Created", "?")[:19].replace("T", " ")
    details = ", ".join((f"{operation} since {created} UTC", f"lock {lock.get('ID', '?')}", *more))
    return f"{lock.get('Who', 'someone')} ({details})"


def lock_wait_message(event: Event) -> str:
    """One line for a ``LOCK_WAIT`` event: who holds the lock and how long this run waits for it."""
    lock = event.get("lock")
    held = f"the state is locked by {describe_lock(lock)}; " if isinstance(lock, dict) else ""
    return f"{held}waiting up to {event.get('lock_timeout_s', '?')} s for the state lock"


def _lock_info(detail: str) -> dict[str, str]:
    """The ``Lock Info:`` block of Terraform's lock error: ID, Path, Operation, Who, Version, Created."""
    info = {}
    for line in detail.partition("Lock Info:")[2].splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key and " " not in key:
            info[key] = value.strip()
        elif not line.strip() and info:
            break
    return info


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error") or "error" in ln.lower()]
    return (errors or lines or ["terraform failed without output"])[0][:400]
