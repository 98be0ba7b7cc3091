"""gpufleet's own Terraform CLI config, so offline and air-gapped sites work without touching ~/.terraformrc.

The provider mirror comes from ``TF_PLUGIN_MIRROR`` or, failing that, the standard mirror locations.
With no mirror, Terraform installs providers from the registry as usual.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from gpufleet.errors import UserInputError

MIRROR_ENV = "TF_PLUGIN_MIRROR"
_PROVIDER_DIR = Path("registry.terraform.io/hashicorp/aws")


def standard_mirror_locations() -> list[Path]:
    """Terraform's implied local mirror directories (CLI config docs), plus common image locations."""
    home = Path.home()
    xdg = [Path(p) / "terraform/plugins" for p in os.environ.get("XDG_DATA_DIRS", "/usr/local/share:/usr/share")
           .split(":") if p]
    return [home / ".terraform.d/plugins", home / ".local/share/terraform/plugins", *xdg,
            Path("/opt/tf-plugins"), Path("/opt/terraform/plugins")]


def find_mirror() -> Path | None:
    """The provider mirror to use, or None to install from the registry."""
    configured = os.environ.get(MIRROR_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not (path / _PROVIDER_DIR).is_dir():
            raise UserInputError([f"{MIRROR_ENV}: {path} holds no {_PROVIDER_DIR} (point it at the folder that "
                                  "contains registry.terraform.io/, or unset it to use the registry)"])
        return path
    return next((p for p in standard_mirror_locations() if (p / _PROVIDER_DIR).is_dir()), None)


def write_cli_config(directory: Path) -> Path:
    """Write ``terraform.rc`` under ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    mirror = find_mirror()
    lines = ["disable_checkpoint = true"]
    if mirror is not None:
        lines += [
            "provider_installation {",
            f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["registry.terraform.io/*/*"]\n  }}',
            "}",
        ]
    path = directory / "terraform.rc"
    # Parallel stack runs each write it: replace atomically so no terraform reads a half-written file.
    tmp = path.with_name(f".terraform.rc.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
