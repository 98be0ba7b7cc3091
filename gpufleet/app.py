"""The cdktf app: a ``platform`` stack and a ``team-<name>`` stack per team in the config.

``gpufleet synth`` and deploy call ``synth_app``; ``cdktf.json`` runs ``python -m gpufleet.cli.cdktf_app``,
which builds the same app.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpufleet.config import PlatformConfig
from gpufleet.target import Target


@dataclass(frozen=True)
class SynthResult:
    outdir: Path
    stacks: dict[str, int]  # stack name -> resource count


def build_app(cfg: PlatformConfig, target: Target, outdir: Path, region: str | None = None):  # type: ignore[no-untyped-def]
    """A cdktf ``App`` holding every stack (imports cdktf lazily: `validate` must not pay for it)."""
    from cdktf import App

    from gpufleet.stacks.platform import PlatformStack
    from gpufleet.stacks.team import TeamStack

    app = App(outdir=str(outdir), skip_validation=False)
    platform = PlatformStack(app, cfg, target, region=region)
    for team in cfg.teams:
        TeamStack(app, cfg, team, platform, target, region=region)
    return app


def count_resources(stack_dir: Path) -> int:
    import json

    doc = json.loads((stack_dir / "cdk.tf.json").read_text())
    return sum(len(v) for v in doc.get("resource", {}).values())


def synth_app(cfg: PlatformConfig, target: Target, outdir: Path, region: str | None = None) -> SynthResult:
    build_app(cfg, target, outdir, region).synth()
    stacks_dir = outdir / "stacks"
    names = ["platform"] + [f"team-{t.name}" for t in cfg.teams]
    return SynthResult(outdir, {n: count_resources(stacks_dir / n) for n in names})
