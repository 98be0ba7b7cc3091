"""The ``model.tar.gz`` format serving reads: the model folder's contents at the tar root, optionally a
``code/`` folder with SageMaker's ``inference.py`` (and its ``requirements.txt``). Training hosts pack it
after a job; the control plane packs and repacks models brought from elsewhere.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

CODE_DIR = "code"
INFERENCE_SCRIPT = "inference.py"
# What serving can load without inference code: a TorchScript program or a torch.export program.
DEFAULT_MODEL_FILES = ("model.pt", "model.pt2")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_model_dir(model_dir: Path, dest: Path) -> str:
    """Write ``dest`` (model.tar.gz) from ``model_dir``'s contents (symlinks left out); returns its sha256."""
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_symlink():
                continue
            tar.add(str(path), arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return file_sha256(dest)


def unpack_model_archive(tarball: Path, dest: Path) -> None:
    """Extract safely (tarfile's ``data`` filter: no absolute paths, links out or devices). Raises
    tarfile.TarError or OSError for a file that is not a usable archive."""
    with tarfile.open(tarball, "r:*") as archive:
        archive.extractall(dest, filter="data")


def servable(model_dir: Path) -> bool:
    """Whether serving can load this folder: inference code, or a default model file at the root."""
    return (model_dir / CODE_DIR / INFERENCE_SCRIPT).is_file() or any(
        (model_dir / name).is_file() for name in DEFAULT_MODEL_FILES)
