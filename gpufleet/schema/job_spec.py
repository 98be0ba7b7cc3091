"""The job spec (YAML or JSON): what to run, on what data, on how many hosts, and where results go.

Errors are one line per problem, in the config's style: ``<where>: <field>: <what> (<how to fix>)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpufleet.documents import read_document
from gpufleet.errors import UserInputError
from gpufleet.images import IMAGE, IMAGE_FIX
from gpufleet.schema.priority import DEFAULT_PRIORITY, Priority

S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
HyperValue = bool | int | float | str

# How to fix each field, appended to its error.
FIX = {
    "name": "lower-case letters, digits and dashes, at most 63",
    "team": "the team whose queue runs the job",
    "source": "an s3:// URI of a .tar.gz, or submit a local directory",
    "entry_point": "a relative path to a .py file inside the source",
    "hyperparameters": "a map of names (letters, digits, _ and -) to scalars",
    "channels": "a map of lower-case names to s3:// URIs",
    "instance_count": "an integer from 1 to 64",
    "gpus_per_instance": "an integer from 0 (CPU) to 8",
    "max_runtime_s": "seconds, from 1 to 2419200 (28 days)",
    "checkpoint_uri": "an s3:// URI, or leave it out for the team's checkpoint bucket",
    "checkpoint_interval_s": "seconds between checkpoint uploads, at least 0.5",
    "metric_definitions": "a list of {name, regex} with one capture group around the number",
    "output_model_name": "lower-case letters, digits and dashes, at most 63",
    "image": IMAGE_FIX,
    "priority": "one of high, normal, low; leave it out for normal",
}


class MetricDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.:/-]{1,255}$")
    regex: str = Field(min_length=1, max_length=500)

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"regex does not compile ({exc})") from None
        if groups != 1:
            raise ValueError(f"regex has {groups} capture groups, needs exactly 1")
        return value


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME)
    team: str = Field(pattern=NAME)
    source: str | None = Field(default=None, pattern=S3_URI)
    entry_point: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py$")
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    channels: dict[str, str] = Field(default_factory=dict)
    instance_count: int = Field(default=1, ge=1, le=64)
    gpus_per_instance: int = Field(default=0, ge=0, le=8)
    max_runtime_s: int = Field(default=86400, ge=1, le=2419200)
    checkpoint_uri: str | None = Field(default=None, pattern=S3_URI)
    checkpoint_interval_s: float = Field(default=300.0, ge=0.5, le=86400)
    metric_definitions: list[MetricDefinition] = Field(default_factory=list, max_length=40)
    output_model_name: str | None = Field(default=None, pattern=NAME)
    image: str | None = Field(default=None, pattern=IMAGE)   # SageMaker's bring-your-own-container contract
    priority: Priority = DEFAULT_PRIORITY    # which of the team's queues: high drains first

    @field_validator("entry_point")
    @classmethod
    def _inside_source(cls, value: str | None) -> str | None:
        if value is not None and ".." in value.split("/"):
            raise ValueError(f"{value!r} leaves the source directory")
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _hp_names(cls, value: dict[str, HyperValue]) -> dict[str, HyperValue]:
        bad = [k for k in value if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}", k)]
        if bad:
            raise ValueError(f"bad hyperparameter name {bad[0]!r}")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[str, str]) -> dict[str, str]:
        for name, uri in value.items():
            if not re.fullmatch(r"[a-z0-9_]{1,64}", name):
                raise ValueError(f"bad channel name {name!r}")
            if not re.fullmatch(S3_URI, uri):
                raise ValueError(f"channel {name!r} is not an s3:// URI")
        return value

    @model_validator(mode="after")
    def _something_to_run(self) -> JobSpec:
        if not (self.entry_point or self.image):
            raise ValueError("entry_point: missing (name the .py file the job runs, or give an image)")
        return self

    @property
    def model_name(self) -> str:
        return self.output_model_name or self.name

    @property
    def procs_per_host(self) -> int:
        return max(1, self.gpus_per_instance)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` -> (bucket, key/prefix)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _problem(where: str, err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    field = loc[0] if loc else "spec"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not loc:   # a check across fields: its message names the field and the fix
        return f"{where}: {msg}"
    if err["type"] == "string_pattern_mismatch":
        msg = f"{err.get('input')!r} is not valid"
    hint = FIX.get(field, "remove it; see the job spec fields in ARCHITECTURE.md")
    return f"{where}: {'.'.join(loc) or 'spec'}: {msg} ({hint})"


def parse_job_spec(data: object, where: str = "job spec") -> JobSpec:
    if not isinstance(data, dict):
        raise UserInputError([f"{where}: spec: not a mapping (write the spec as a YAML or JSON mapping)"])
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(_problem(where, e) for e in exc.errors()) from None


def load_job_spec(path: str | Path) -> JobSpec:
    data = read_document(path, "job spec", "check the path")
    return parse_job_spec(data, str(path))
