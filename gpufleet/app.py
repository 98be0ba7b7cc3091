"""The cdktf app: a ``platform`` stack and a ``team-<name>`` stack per team in the config.

``cdktf.json`` runs ``python -m gpufleet.app``; ``gpufleet synth`` calls ``synth_app`` directly.
Environment: ``GPUFLEET_CONFIG`` (default ``gpufleet.yaml``), ``GPUFLEET_TARGET`` (``local``|``aws``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpufleet.config import DEFAULT_CONFIG, PlatformConfig, Team, load_config
from gpufleet.errors import UserInputError
from gpufleet.target import Target


@dataclass(frozen=True)
class SynthResult:
    outdir: Path
    stacks: dict[str, int]  # stack name -> resource count


def build_app(cfg: PlatformConfig, target: Target, outdir: Path, region: str | None = None):  # type: ignore[no-untyped-def]
    """A cdktf ``App`` holding every stack (imports cdktf lazily: `validate` must not pay for it)."""
    return build_stacks(cfg, target, outdir, region, cfg.teams)[0]


def build_stacks(cfg: PlatformConfig, target: Target, outdir: Path, region: str | None,  # type: ignore[no-untyped-def]
                 teams: Sequence[Team]):
    """An ``App`` with the platform stack and the stacks of ``teams`` only, and the platform stack."""
    from cdktf import App

    from gpufleet.stacks.platform import PlatformStack
    from gpufleet.stacks.team import TeamStack

    app = App(outdir=str(outdir), skip_validation=False)
    platform = PlatformStack(app, cfg, target, region=region)
    for team in teams:
        TeamStack(app, cfg, team, platform, target, region=region)
    return app, platform


def count_resources(stack_dir: Path) -> int:
    import json

    doc = json.loads((stack_dir / "cdk.tf.json").read_text())
    return sum(len(v) for v in doc.get("resource", {}).values())


def synth_app(cfg: PlatformConfig, target: Target, outdir: Path, region: str | None = None,
              processes: int | None = None) -> SynthResult:
    """Write every stack under ``outdir``; with many teams, in several processes (gpufleet.synth_split),
    byte-identical either way. ``processes`` defaults to what the cores and team count make worthwhile."""
    from gpufleet.synth_split import process_count, synth_split

    processes = processes or process_count(len(cfg.teams))
    if processes > 1 and len(cfg.teams) > 1:
        synth_split(cfg, target, outdir, region, processes)
    else:
        build_app(cfg, target, outdir, region).synth()
    stacks_dir = outdir / "stacks"
    names = ["platform"] + [f"team-{t.name}" for t in cfg.teams]
    return SynthResult(outdir, {n: count_resources(stacks_dir / n) for n in names})


def main() -> int:
    from gpufleet.cli.context import resolve_target

    try:
        cfg = load_config(os.environ.get("GPUFLEET_CONFIG", DEFAULT_CONFIG))
        target = resolve_target(None, for_deploy=False)
    except UserInputError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    outdir = Path(os.environ.get("CDKTF_OUTDIR", "cdktf.out"))
    build_app(cfg, target, outdir).synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
