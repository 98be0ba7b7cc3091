"""The SageMaker script-mode contract: the ``/opt/ml`` layout under the agent's work root, the ``SM_*``
environment and the ``--name value`` hyperparameter arguments. A script written for SageMaker's
PyTorch estimator reads everything it needs from here, unchanged.

``SM_CHECKPOINT_DIR`` is gpufleet's addition: SageMaker has no variable for it, its scripts use
``/opt/ml/checkpoints``, which is what it points to when the work root is ``/opt/ml``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gpufleet.schema.job_spec import JobSpec, split_s3_uri

# The parts of the layout a job owns; wiped before each job so nothing leaks between jobs.
JOB_DIRS = ("input", "model", "output", "code", "checkpoints")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def input_config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def credentials(self) -> Path:
        """The job role's session for this job (jobcreds.py): the job user's alone, removed when it ends."""
        return self.root / "credentials"

    @property
    def job_log(self) -> Path:
        return self.root / "output" / "job.log"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    def reset(self) -> None:
        """Empty the job's folders (and only those: the root may hold other things)."""
        for name in JOB_DIRS:
            shutil.rmtree(self.root / name, ignore_errors=True)
        for path in (self.code, self.model, self.output_data, self.input_config, self.checkpoints,
                     self.root / "input" / "data"):
            path.mkdir(parents=True, exist_ok=True)


    def reset_quietly(self) -> None:
        """Free what a failed preparation left, ignoring errors (the disk may still be full)."""
        for name in JOB_DIRS:
            shutil.rmtree(self.root / name, ignore_errors=True)


def hosts(count: int) -> list[str]:
    """SageMaker's host names: ``algo-1`` .. ``algo-N``; this host is ``algo-<slot + 1>``."""
    return [f"algo-{i + 1}" for i in range(count)]


def hp_string(value: object) -> str:
    """Strings as they are, everything else as JSON (``true``, ``0.01``): what SageMaker passes."""
    return value if isinstance(value, str) else json.dumps(value)


def hyperparameter_args(spec: JobSpec) -> list[str]:
    args: list[str] = []
    for name, value in spec.hyperparameters.items():
        args += [f"--{name}", hp_string(value)]
    return args


def write_input_config(layout: Layout, spec: JobSpec, slot: int) -> None:
    names = hosts(spec.instance_count)
    files = {
        "hyperparameters.json": {k: hp_string(v) for k, v in spec.hyperparameters.items()},
        "resourceconfig.json": {"current_host": names[slot], "hosts": names, "network_interface_name": "eth0"},
        "inputdataconfig.json": {c: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
                                 for c in spec.channels},
    }
    for name, body in files.items():
        (layout.input_config / name).write_text(json.dumps(body, indent=2))


def sm_environment(layout: Layout, spec: JobSpec, slot: int, job_id: str) -> dict[str, str]:
    """The ``SM_*`` variables of SageMaker's training toolkit, for this host of the job."""
    names = hosts(spec.instance_count)
    channels = sorted(spec.channels)
    entry_point = spec.entry_point or ""   # a container job's image decides what runs
    user_args = hyperparameter_args(spec)
    env = {
        "SM_MODEL_DIR": str(layout.model),
        "SM_OUTPUT_DIR": str(layout.output),
        "SM_OUTPUT_DATA_DIR": str(layout.output_data),
        "SM_INPUT_DIR": str(layout.root / "input"),
        "SM_INPUT_CONFIG_DIR": str(layout.input_config),
        "SM_CHECKPOINT_DIR": str(layout.checkpoints),
        "SM_CHANNELS": json.dumps(channels),
        "SM_HPS": json.dumps(spec.hyperparameters),
        "SM_NUM_GPUS": str(spec.gpus_per_instance),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_CURRENT_HOST": names[slot],
        "SM_HOSTS": json.dumps(names),
        "SM_MODULE_DIR": spec.source or "",
        "SM_MODULE_NAME": entry_point.removesuffix(".py").replace("/", "."),
        "SM_USER_ENTRY_POINT": entry_point,
        "SM_USER_ARGS": json.dumps(user_args),
        "SM_LOG_LEVEL": "20",
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_TRAINING_JOB_NAME": job_id,
    }
    for name in channels:
        env[f"SM_CHANNEL_{name.upper()}"] = str(layout.channel(name))
    for name, value in spec.hyperparameters.items():
        env[f"SM_HP_{name.upper()}"] = hp_string(value)
    env["SM_TRAINING_ENV"] = json.dumps({
        "job_name": job_id, "current_host": names[slot], "hosts": names, "hyperparameters": spec.hyperparameters,
        "channel_input_dirs": {c: str(layout.channel(c)) for c in channels}, "model_dir": str(layout.model),
        "output_data_dir": str(layout.output_data), "num_gpus": spec.gpus_per_instance,
        "module_dir": spec.source or "", "user_entry_point": entry_point,
    })
    return env


def checkpoint_location(spec: JobSpec, checkpoints_bucket: str, job_id: str) -> tuple[str, str]:
    """(bucket, prefix ending in /) where this job's checkpoints live in S3."""
    bucket, prefix = split_s3_uri(spec.checkpoint_uri or f"s3://{checkpoints_bucket}/{job_id}/")
    return bucket, (prefix.rstrip("/") + "/") if prefix else ""
