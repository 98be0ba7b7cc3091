"""A throwaway package built into a wheelhouse folder: requirements.txt tests install it with no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TINY_PACKAGE = "gpufleet-tiny-dep"
TINY_MODULE = "gpufleet_tiny_dep"
TINY_GREETING = "hello from a wheel"


def build_tiny_wheelhouse(root: Path) -> Path:
    """``root/wheelhouse`` holding ``gpufleet-tiny-dep 1.0``, built with ``pip wheel`` from local source."""
    source, wheelhouse = root / "tiny-src", root / "wheelhouse"
    (source / TINY_MODULE).mkdir(parents=True)
    (source / TINY_MODULE / "__init__.py").write_text(f"GREETING = {TINY_GREETING!r}\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{TINY_PACKAGE}"\nversion = "1.0"\n')
    # No build isolation: the isolated build would fetch setuptools from an index.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(wheelhouse), str(source)], check=True, capture_output=True)
    return wheelhouse
