"""The cdktf app: a ``platform`` stack and a ``team-<name>`` stack per team in the config.

``gpufleet synth`` and deploy call ``synth_app``; ``cdktf.json`` runs ``python -m gpufleet.cli.cdktf_app``,
which builds the same app. ``python -m gpufleet.app`` is a helper of a split synth (gpufleet.synth_split).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpufleet import synth_split
from gpufleet.config import PlatformConfig, Team
from gpufleet.target import Target

HELPER_MODULE = "gpufleet.app"   # what a split synth's helpers run (see the end of this module)


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
    import gpufleet.providers  # noqa: F401  first: the first jsii import starts node (see providers)

    # isort: split
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
    processes = processes or synth_split.process_count(len(cfg.teams))
    if processes > 1 and len(cfg.teams) > 1:
        _synth_split(cfg, target, outdir, region, processes)
    else:
        build_app(cfg, target, outdir, region).synth()
    stacks_dir = outdir / "stacks"
    names = ["platform"] + [f"team-{t.name}" for t in cfg.teams]
    return SynthResult(outdir, {n: count_resources(stacks_dir / n) for n in names})


def _synth_split(cfg: PlatformConfig, target: Target, outdir: Path, region: str | None, processes: int) -> None:
    """The platform and the first slice of teams here, each other slice in a helper process, then merged."""
    mine, *others = synth_split.slices(cfg.teams, processes)
    with tempfile.TemporaryDirectory(prefix="gpufleet-synth-") as tmp:
        helper_outs = [Path(tmp) / f"slice-{i}" for i in range(1, len(others) + 1)]
        # Started before this process imports cdktf, so their start-up overlaps ours.
        helpers = [synth_split.start_helper(synth_split.SliceJob(cfg, target, region, tuple(t.name for t in teams)),
                                            out, HELPER_MODULE)
                   for teams, out in zip(others, helper_outs, strict=True)]
        try:
            app, platform = build_stacks(cfg, target, outdir, region, mine)
            # Synthesized while the helpers work: their teams usually read no platform attribute that this
            # slice's teams do not, and when they do, this process synthesizes again with those added.
            app.synth()
            for helper in helpers:
                synth_split.wait_helper(helper)
        finally:
            synth_split.stop_helpers(helpers)
        missing = synth_split.missing_references(outdir, helper_outs)
        if missing:
            for reference in missing:
                platform.register_outgoing_cross_stack_reference(reference)
            app.synth()
        synth_split.check_platform_outputs(outdir, helper_outs)
        synth_split.merge_slices(outdir, helper_outs)


def _helper_main(outdir: Path) -> int:
    job = synth_split.read_job()
    wanted = set(job.teams)
    app, _ = build_stacks(job.cfg, job.target, outdir, job.region, [t for t in job.cfg.teams if t.name in wanted])
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main(Path(sys.argv[1])))
