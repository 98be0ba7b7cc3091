"""A job's or a model's ``requirements.txt``, installed as SageMaker's toolkits do, into a virtualenv of
its own layered on the host's site-packages (``--system-site-packages``), so the AMI's torch and CUDA
libraries are reused and only what is missing is installed.

Environments are cached by a hash of the requirements, the interpreter and the package source: the
next job with the same file starts at once. A build holds a file lock (two agents on one host build
an environment once) and marks it complete last, so a build cut short is rebuilt, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpufleet.schema.pip_settings import PipSettings

REQUIREMENTS_FILE = "requirements.txt"
_COMPLETE = ".gpufleet-complete"
_ERROR_LINES = 3   # pip's last ERROR: lines quoted in a failure (the cause, then the summary)


class RequirementsError(Exception):
    """pip could not install the requirements: the message is pip's own error line(s)."""


def environment_key(requirements: bytes, python: str, pip: PipSettings) -> str:
    """What decides an environment's contents: the file, the interpreter it layers on, the source."""
    digest = hashlib.sha256(requirements)
    for part in (os.path.realpath(python), pip.index_url or "", pip.wheelhouse or ""):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:20]


def pip_source_args(pip: PipSettings) -> list[str]:
    if pip.wheelhouse:
        return ["--no-index", "--find-links", pip.wheelhouse]
    if pip.index_url:
        return ["--index-url", pip.index_url]
    return []


def venv_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def venv_site_packages(env_dir: Path) -> Path:
    found = sorted((env_dir / "lib").glob("python3*/site-packages"))
    own = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return found[0] if found else env_dir / "lib" / own / "site-packages"


def cache_root(pip: PipSettings, work_root: str | Path) -> Path:
    return Path(pip.cache_dir) if pip.cache_dir else Path(work_root) / "envs"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pip_error(output: str) -> str:
    """The lines a user needs from pip's output: its ``ERROR:`` lines, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return "\n".join(errors[-_ERROR_LINES:]) if errors else (lines[-1] if lines else "pip failed silently")


def _run(argv: list[str], log: Path | None, timeout_s: float) -> None:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout_s, env={**os.environ, "PIP_NO_INPUT": "1",
                                                      "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    except subprocess.TimeoutExpired:
        raise RequirementsError(f"pip did not finish in {timeout_s:.0f}s (raise pip.timeout_s or use a "
                                "wheelhouse)") from None
    output = done.stdout.decode("utf-8", errors="replace")
    if log is not None:
        with log.open("a", encoding="utf-8") as out:
            out.write(output)
    if done.returncode != 0:
        raise RequirementsError(pip_error(output))


def _build(env_dir: Path, requirements: Path, python: str, pip: PipSettings, log: Path | None) -> None:
    shutil.rmtree(env_dir, ignore_errors=True)
    # No pip of its own: the host's pip, seen through the system site-packages, installs into the
    # environment it runs in (saves ensurepip's seconds on every new environment).
    _run([python, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)], log, 120)
    _layer_on_parent_environment(python, env_dir)
    try:
        _run([str(venv_python(env_dir)), "-m", "pip", "install", "--no-warn-script-location",
              *pip_source_args(pip), "-r", str(requirements)], log, pip.timeout_s)
    except RequirementsError:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    (env_dir / _COMPLETE).write_text(requirements.read_text(errors="replace"))


def _layer_on_parent_environment(python: str, env_dir: Path) -> None:
    """When the agent's interpreter is itself a virtualenv, ``--system-site-packages`` reaches only the
    base interpreter's packages: a ``.pth`` adds the agent environment's (where torch lives) behind ours."""
    probe = subprocess.run([python, "-c", "import site, sys; print(sys.prefix != sys.base_prefix); "
                                          "print('\\n'.join(site.getsitepackages()))"],
                           capture_output=True, text=True, check=True)
    is_venv, *sites = probe.stdout.splitlines()
    if is_venv == "True":
        target = venv_site_packages(env_dir)
        target.mkdir(parents=True, exist_ok=True)
        (target / "_gpufleet_parent.pth").write_text("".join(f"{s}\n" for s in sites))


def ensure_environment(requirements: Path, cache_root: Path, python: str, pip: PipSettings,
                       log: Path | None = None, reader_gid: int | None = None) -> Path:
    """The directory of a complete environment with ``requirements`` installed; built when missing.
    ``reader_gid``: the job user's group, which must read and run the environment but never change it
    (the agent builds it under UMask 0027). Raises RequirementsError with pip's error line."""
    key = environment_key(requirements.read_bytes(), python, pip)
    env_dir = cache_root / key
    with _locked(cache_root / f"{key}.lock"):
        if not (env_dir / _COMPLETE).is_file():
            _build(env_dir, requirements, python, pip, log)
        if reader_gid is not None:
            share_read_only(cache_root, reader_gid, recursive=False)
            if env_dir.stat().st_gid != reader_gid:   # a cached environment built for no job user yet
                share_read_only(env_dir, reader_gid)
    return env_dir


def share_read_only(top: Path, gid: int, recursive: bool = True) -> None:
    """Group ``gid`` gets what the owner has of read and execute (never write); others get nothing."""
    for path in [top, *top.rglob("*")] if recursive else [top]:
        mode = os.lstat(path).st_mode
        os.chown(path, -1, gid, follow_symlinks=False)
        if not stat.S_ISLNK(mode):
            owner = stat.S_IMODE(mode) & 0o700
            path.chmod(owner | (owner >> 3) & 0o050)


def requirements_python(code_dir: Path, cache: Path, python: str, pip: PipSettings, log: Path | None,
                        reader_gid: int | None = None) -> str | None:
    """The interpreter of ``code_dir/requirements.txt``'s environment, or None when there is no such file."""
    requirements = code_dir / REQUIREMENTS_FILE
    if not requirements.is_file():
        return None
    return str(venv_python(ensure_environment(requirements, cache, python, pip, log, reader_gid)))


def activate_model_requirements(code_dir: Path, cache: Path, pip: PipSettings) -> Path | None:
    """Serving runs a model's ``code/inference.py`` in the agent's own process: its requirements'
    environment (built on the agent's interpreter) goes to the front of ``sys.path`` and stays there,
    since the handler may import lazily at request time. Returns the environment, or None without a file."""
    requirements = code_dir / REQUIREMENTS_FILE
    if not requirements.is_file():
        return None
    env_dir = ensure_environment(requirements, cache, sys.executable, pip)
    site_dir = str(venv_site_packages(env_dir))
    if site_dir not in sys.path:
        sys.path.insert(0, site_dir)
        importlib.invalidate_caches()
    return env_dir
