"""The parts of a synth split over processes (``gpufleet.app.synth_app`` runs it), with output
byte-identical to one process.

Why: every construct is a round trip to the jsii node process, and Python and node take turns, so one
synth uses about one core; at 50 teams that is most of the time (scripts/bench-synth). Team stacks depend
only on the platform stack, so teams split into contiguous slices: the calling process builds the platform
and the first slice, each helper process (``python -m gpufleet.app``) builds the platform and one other
slice into its own directory. Then:

- a team stack's JSON never depends on the other teams, so helpers' team stacks are moved in as they are;
- the platform stack gains one ``cross-stack-output-*`` output per attribute any team reads. This process
  synthesizes its own stacks while the helpers work; if a helper's teams read a platform attribute its own
  teams do not, it registers those references and synthesizes again (and checks the result holds every
  helper's outputs);
- ``manifest.json`` is the union of the slices' entries, written in cdktf's own JSON layout.

Each helper is a Python and a node process (about 600 MB together) and pays the bindings' start-up
(about 4 s), so slices are only made when there are cores for them and teams enough to amortize that.
``GPUFLEET_SYNTH_PROCESSES`` overrides the count (1 turns splitting off).

Helpers run with ``python -O``: that skips the bindings' Python-side argument checks (typeguard, about a
sixth of a slice's CPU). They are a development aid that this process still runs on the platform and the
first slice, the node side validates every value again, and the output is the same bytes
(tests/stacks/test_synth_split.py).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gpufleet
from gpufleet.config import PlatformConfig, Team
from gpufleet.errors import UserInputError
from gpufleet.target import Target

PROCESSES_ENV = "GPUFLEET_SYNTH_PROCESSES"
MAX_PROCESSES = 4        # each one holds a node process of ~500 MB
MIN_TEAMS_PER_SLICE = 6  # below this a helper's start-up costs more than its slice saves
OUTPUT_PREFIX = "cross-stack-output-"


@dataclass(frozen=True)
class SliceJob:
    """What a helper process synthesizes: the platform plus ``teams`` (names from ``cfg.teams``)."""
    cfg: PlatformConfig
    target: Target
    region: str | None
    teams: tuple[str, ...]


def process_count(teams: int) -> int:
    """How many processes to synthesize ``teams`` team stacks with (this one included)."""
    override = os.environ.get(PROCESSES_ENV, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise UserInputError([f"{PROCESSES_ENV}: {override!r} is not a process count (use 1 or more; "
                                  "1 synthesizes in one process)"])
        return int(override)
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, MAX_PROCESSES, teams // MIN_TEAMS_PER_SLICE))


def slices(teams: Sequence[Team], count: int) -> list[list[Team]]:
    """``count`` contiguous, near-equal slices of ``teams`` (fewer when there are fewer teams)."""
    count = max(1, min(count, len(teams)))
    size, extra = divmod(len(teams), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(list(teams[start:end]))
        start = end
    return out


@dataclass
class Helper:
    proc: subprocess.Popen[bytes]
    log: Path   # its stderr: a file, not a pipe nobody reads until it ends


def start_helper(job: SliceJob, outdir: Path, entry_module: str) -> Helper:
    """A helper process (``python -O -m <entry_module> <outdir>``, ``job`` on its stdin) synthesizing ``job``
    into ``outdir``; it runs this checkout's gpufleet."""
    checkout = str(Path(gpufleet.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH", "")) if p)
    log = outdir.with_suffix(".log")
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-O", "-m", entry_module, str(outdir)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "PYTHONPATH": path})
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(job))
    proc.stdin.close()
    return Helper(proc, log)


def wait_helper(helper: Helper) -> None:
    if helper.proc.wait() != 0:
        err = helper.log.read_text(errors="replace")
        raise RuntimeError(f"synth of a slice of team stacks failed (exit {helper.proc.returncode}):\n{err[-4000:]}")


def read_job() -> SliceJob:
    """The job a helper was started with (it must read it first: its parent blocks until it is read)."""
    job: SliceJob = pickle.loads(sys.stdin.buffer.read())  # from our own parent process, never user input
    return job


def stop_helpers(helpers: Sequence[Helper]) -> None:
    for helper in helpers:
        if helper.proc.poll() is None:
            helper.proc.kill()
            helper.proc.wait()


def platform_references(helper_out: Path) -> list[str]:
    """The platform attributes a helper's teams read, e.g. ``aws_vpc.network_vpc_4E8F0223.id``."""
    doc = json.loads((helper_out / "stacks" / "platform" / "cdk.tf.json").read_text())
    return [out["value"][2:-1] for name, out in sorted(doc.get("output", {}).items())
            if name.startswith(OUTPUT_PREFIX)]


def missing_references(outdir: Path, helper_outs: Sequence[Path]) -> list[str]:
    """The platform attributes helpers' teams read that the platform stack in ``outdir`` has no output for."""
    own = set(platform_references(outdir))
    wanted = {reference for helper_out in helper_outs for reference in platform_references(helper_out)}
    return sorted(wanted - own)


def check_platform_outputs(outdir: Path, helper_outs: Sequence[Path]) -> None:
    """Every output a helper's platform has must be in the merged platform stack, with the same value."""
    merged = json.loads((outdir / "stacks" / "platform" / "cdk.tf.json").read_text()).get("output", {})
    for helper_out in helper_outs:
        own = json.loads((helper_out / "stacks" / "platform" / "cdk.tf.json").read_text()).get("output", {})
        missing = [k for k, v in own.items() if merged.get(k) != v]
        if missing:
            raise RuntimeError(f"merged platform stack lacks outputs {missing} that a slice of teams reads")


def merge_slices(outdir: Path, helper_outs: Sequence[Path]) -> None:
    """Move the helpers' team stacks into ``outdir`` and write the union of the manifests."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    for helper_out in helper_outs:
        theirs = json.loads((helper_out / "manifest.json").read_text())
        for name, entry in theirs["stacks"].items():
            if name == "platform":
                continue
            target_dir = outdir / "stacks" / name
            shutil.rmtree(target_dir, ignore_errors=True)
            shutil.move(str(helper_out / "stacks" / name), str(target_dir))
            manifest["stacks"][name] = entry
    (outdir / "manifest.json").write_text(stable_json(manifest), encoding="utf-8")


def stable_json(value: Any, level: int = 0, space: str = "  ") -> str:
    """JSON as cdktf writes it (the npm package json-stable-stringify with ``space: 2``): sorted keys, and
    an empty list or object still opens a line (``[\\n  ]``)."""
    indent = "\n" + space * level
    if isinstance(value, dict):
        items = [f"{indent}{space}{json.dumps(k, ensure_ascii=False)}: {stable_json(v, level + 1, space)}"
                 for k, v in sorted(value.items())]
        return "{" + ",".join(items) + indent + "}"
    if isinstance(value, list):
        return "[" + ",".join(f"{indent}{space}{stable_json(v, level + 1, space)}" for v in value) + indent + "]"
    return json.dumps(value, ensure_ascii=False)
