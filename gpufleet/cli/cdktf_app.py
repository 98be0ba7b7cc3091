"""The cdktf CLI's entry point (``cdktf.json``: ``python -m gpufleet.cli.cdktf_app``): the app ``gpufleet synth``
builds, split over processes the same way for many teams.

Environment: ``GPUFLEET_CONFIG`` (default ``gpufleet.yaml``), ``GPUFLEET_TARGET`` (``local``|``aws``),
``CDKTF_OUTDIR`` (set by the cdktf CLI).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gpufleet.app import synth_app
from gpufleet.cli.context import resolve_target
from gpufleet.config import DEFAULT_CONFIG, load_config
from gpufleet.errors import UserInputError


def main() -> int:
    try:
        cfg = load_config(os.environ.get("GPUFLEET_CONFIG", DEFAULT_CONFIG))
        target = resolve_target(None, for_deploy=False)
    except UserInputError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    outdir = Path(os.environ.get("CDKTF_OUTDIR", "cdktf.out"))
    synth_app(cfg, target, outdir)  # many teams: split over processes, byte-identical to one
    return 0


if __name__ == "__main__":
    sys.exit(main())
