"""``gpufleet nodes configure``: the team's hosts, the agent wheel and the run of ``gpu-node.yml``."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.nodes.runner import EventSink, PlaybookResult, PlaybookRun, run_playbook
from gpufleet.schema.runtime import TeamRuntime, load_runtime
from gpufleet.workspace import teams_dir

PLAYBOOK = "gpu-node.yml"
PLAYBOOKS_ENV = "GPUFLEET_PLAYBOOKS"
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def playbooks_dir() -> Path:
    """``$GPUFLEET_PLAYBOOKS``, else ``playbooks/`` of the checkout this package runs from."""
    path = Path(os.environ.get(PLAYBOOKS_ENV) or SOURCE_ROOT / "playbooks")
    if not (path / PLAYBOOK).is_file():
        raise UserInputError([f"{path}: no {PLAYBOOK} here (set ${PLAYBOOKS_ENV} to gpufleet's playbooks/ folder)"])
    return path


def group_name(kind: str, value: str) -> str:
    """The inventory group for a tag value, as Ansible names it (invalid characters become '_')."""
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', value)}"


def host_pattern(team: str, role: str | None, limit: str | None) -> str:
    """Hosts of the team, narrowed to a role and to the operator's own ``--limit``."""
    pattern = group_name("team", team)
    if role:
        pattern += f":&{group_name('role', role)}"
    if limit:
        pattern += f":&{limit}"
    return pattern


def build_wheel(source: Path, out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of the gpufleet checkout at ``source``; returns the wheel's path.

    It builds from a clean copy of the package (no stale ``build/``) with a fixed timestamp, so an
    unchanged checkout gives a byte-identical wheel and a re-run changes nothing on the hosts.
    """
    if not (source / "pyproject.toml").is_file():
        raise UserInputError([f"{source}: not a gpufleet checkout (pass --wheel with a built gpufleet wheel)"])
    # Without setuptools here, pip builds in an isolated environment fetched from the index.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    with tempfile.TemporaryDirectory(prefix="gpufleet-src-") as tmp:
        tree = Path(tmp) / "gpufleet"
        shutil.copytree(source / "gpufleet", tree / "gpufleet", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).is_file():
                shutil.copy2(source / name, tree / name)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation,
                               "-w", str(out_dir), str(tree)], capture_output=True, text=True, check=False,
                              env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
    wheels = sorted(out_dir.glob("gpufleet-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeFailure("build agent wheel", tail, "fix the build error, or pass --wheel")
    return wheels[-1]


def team_runtime(team: str, runtime_path: Path | None, workspace: Path) -> TeamRuntime | None:
    """The team's runtime document: ``--runtime``, else the one the CLI wrote on deploy, else None."""
    path = runtime_path or teams_dir(workspace) / f"{team}.json"
    if runtime_path is None and not path.is_file():
        return None
    runtime = load_runtime(path)
    if runtime.team != team:
        raise UserInputError([f"{path}: is team {runtime.team!r}'s runtime, not {team!r} "
                              "(pass the runtime file of the team you configure)"])
    return runtime


@dataclass(frozen=True)
class ConfigureRequest:
    team: str
    inventory: Path
    workspace: Path
    role: str | None = None
    limit: str | None = None
    check: bool = False
    tags: str | None = None
    wheel: Path | None = None
    runtime: Path | None = None


def configure_nodes(req: ConfigureRequest, sink: EventSink | None = None) -> PlaybookResult:
    """Run gpu-node.yml on the team's hosts. The result may hold failures: see ``runner.raise_for``."""
    if not req.inventory.exists():
        raise UserInputError([f"--inventory: {req.inventory} does not exist "
                              "(use playbooks/inventory/aws_ec2.yml or a static inventory)"])
    project = playbooks_dir()
    runtime = team_runtime(req.team, req.runtime, req.workspace)
    with tempfile.TemporaryDirectory(prefix="gpufleet-wheel-") as tmp:
        wheel = req.wheel or build_wheel(SOURCE_ROOT, Path(tmp))
        if not wheel.is_file():
            raise UserInputError([f"--wheel: {wheel} does not exist (build it with `pip wheel --no-deps .`)"])
        extravars: dict[str, object] = {"gpufleet_agent_wheel": str(wheel.absolute())}
        if runtime is not None:
            extravars["gpufleet_agent_team_runtime"] = runtime.model_dump(mode="json")
        run = PlaybookRun(project_dir=project, playbook=PLAYBOOK, inventory=req.inventory,
                          limit=host_pattern(req.team, req.role, req.limit), extravars=extravars,
                          check=req.check, tags=req.tags)
        result = run_playbook(run, sink)
    if result.matched_no_hosts or (not result.recap and not result.failures and result.rc == 0):
        raise UserInputError([f"--team {req.team}: no host in {req.inventory} matches {run.limit} "
                              "(check the hosts' gpufleet:team and gpufleet:role tags, or --limit)"])
    return result
