"""The platform config: one YAML file (``gpufleet.yaml``) describing the platform and its teams.

It knows nothing of cdktf. ``load_config`` either returns a valid ``PlatformConfig`` or raises
``UserInputError`` listing every problem, one line each: ``<path>: <what is wrong> (<how to fix>)``.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import botocore
import botocore.loaders
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gpufleet import gpu_types
from gpufleet.errors import UserInputError
from gpufleet.images import check_image

DEFAULT_CONFIG = "gpufleet.yaml"
DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _dns_name(value: str, max_len: int) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not DNS-safe (use lowercase letters, digits and '-', starting with a letter)"
        )
    if len(value) > max_len:
        raise ValueError(f"{value!r} is {len(value)} characters, over {max_len} (shorten it)")
    return value


@functools.cache
def aws_regions() -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    """Every region of every AWS partition (aws, aws-cn, aws-us-gov, the ISO ones) and each partition's
    region pattern, from botocore's endpoint data: a region AWS launches validates once botocore knows it."""
    data = botocore.loaders.create_loader().load_data("endpoints")
    partitions = data["partitions"]
    return (frozenset(r for p in partitions for r in p["regions"]),
            tuple(re.compile(p["regionRegex"]) for p in partitions))


def _closest(value: str, names: frozenset[str], cutoff: float = 0.8) -> str | None:
    """The most similar name (ties go to the first in order: 'us-east-l' is 'us-east-1', not '-2')."""
    best = min(names, key=lambda n: (-difflib.SequenceMatcher(None, value, n).ratio(), n))
    return best if difflib.SequenceMatcher(None, value, best).ratio() >= cutoff else None


def _region(value: str) -> str:
    known, patterns = aws_regions()
    if value in known:
        return value
    close = _closest(value, known)
    if close or not any(p.match(value) for p in patterns):
        # A near miss of a known region is a typo (a region newer than botocore needs a botocore upgrade).
        hint = f"did you mean {close!r}?" if close else "use an AWS region such as 'us-east-1'"
        raise ValueError(f"{value!r} is not an AWS region ({hint})")
    return value   # well-formed and like no known region: a region newer than botocore


class GpuAmi(_Strict):
    """Which AMI the GPU hosts boot: a fixed id, or the newest image matching a name pattern."""

    id: str | None = Field(default=None, pattern=r"^ami-[0-9a-f]{8,17}$")
    name_pattern: str = "gpufleet-gpu-*"
    owners: list[str] = Field(default_factory=lambda: ["self"], min_length=1)


class StateBackend(_Strict):
    """Remote Terraform state for real AWS: an S3 bucket with S3-native locking."""

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    key_prefix: str = "gpufleet"
    region: str | None = None

    _check_region = field_validator("region")(lambda v: v if v is None else _region(v))


class Platform(_Strict):
    name: str
    region: str = "us-east-1"
    dr_region: str | None = None
    vpc_cidr: str = "10.40.0.0/16"
    az_count: int = Field(default=2, ge=2, le=6)
    nat_gateway: bool = False
    gpu_ami: GpuAmi = Field(default_factory=GpuAmi)
    state_backend: StateBackend | None = None
    max_gpus: int | None = Field(default=None, ge=1, description="Optional platform-wide GPU quota")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_name(v, 16)

    @field_validator("region", "dr_region")
    @classmethod
    def _regions(cls, v: str | None) -> str | None:
        return v if v is None else _region(v)

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not an IPv4 network ({exc}; e.g. '10.40.0.0/16')") from None
        if not 16 <= net.prefixlen <= 22:
            raise ValueError(f"{v!r} has prefix /{net.prefixlen} (use a /16 to /22 so each AZ gets subnets)")
        if not net.is_private:
            raise ValueError(f"{v!r} is not a private range (use 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)")
        return v


def _gpu_instance_type(name: str) -> str:
    if gpu_types.lookup(name):
        return name
    close = gpu_types.suggest(name)
    hint = f"did you mean {close!r}?" if close else "use a GPU type such as 'g5.xlarge'"
    raise ValueError(f"{name!r} is not a GPU instance type ({hint})")


GpuInstanceTypeName = Annotated[str, AfterValidator(_gpu_instance_type)]


class TrainingFleet(_Strict):
    instance_types: list[GpuInstanceTypeName] = Field(min_length=1, max_length=20)
    on_demand_base: int = Field(default=0, ge=0)
    spot_percentage: int = Field(default=100, ge=0, le=100,
                                 description="Share of capacity above the on-demand base that runs on spot")
    max_instances: int = Field(default=4, ge=0, le=1000, description="The team's GPU host quota")
    root_volume_gb: int = Field(default=200, ge=50, le=16384)
    gpus_per_instance: int | None = Field(default=None, ge=1, le=16)

    @field_validator("instance_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists an instance type twice (list each once)")
        return v

    @model_validator(mode="after")
    def _base_fits(self) -> TrainingFleet:
        if self.on_demand_base > self.max_instances:
            raise ValueError(
                f"on_demand_base {self.on_demand_base} exceeds max_instances {self.max_instances} "
                "(lower on_demand_base or raise max_instances)"
            )
        return self

    @property
    def max_gpus(self) -> int:
        per_host = max(t.gpus for n in self.instance_types if (t := gpu_types.lookup(n)))
        return self.max_instances * per_host


class Endpoint(_Strict):
    name: str
    instance_type: GpuInstanceTypeName
    min_instances: int = Field(default=1, ge=0, le=100)
    max_instances: int = Field(default=2, ge=1, le=100)
    target_requests_per_instance: int = Field(default=100, ge=1, le=100_000)
    internet_facing: bool = False
    certificate_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+$")
    allowed_cidrs: list[str] = Field(default_factory=list, max_length=50,
                                     description="Client networks; internal endpoints default to the VPC")
    public: bool = Field(default=False, description="Says an internet-facing endpoint may take clients from "
                                                    "anywhere (0.0.0.0/0)")
    waf: bool = Field(default=True, description="Internet-facing: a WAF web ACL with AWS managed rules")
    capture_percentage: float = Field(default=0.0, ge=0.0, le=100.0)
    image: str | None = Field(default=None, description="Serve with this container (SageMaker's serve "
                                                        "contract) instead of the agent's own process")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_name(v, 12)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return None if v is None else check_image(v)

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.IPv4Network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IPv4 network ({exc}; e.g. '203.0.113.0/24')") from None
        return v

    @property
    def client_cidrs(self) -> list[str]:
        """Where clients may connect from; empty means the VPC (internal endpoints)."""
        return self.allowed_cidrs or (["0.0.0.0/0"] if self.public else [])

    @model_validator(mode="after")
    def _min_le_max(self) -> Endpoint:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances {self.min_instances} > max_instances {self.max_instances} "
                "(make min_instances <= max_instances)"
            )
        return self


class Team(_Strict):
    name: str
    operators: list[Annotated[str, Field(pattern=ARN.pattern)]] = Field(
        default_factory=list, description="IAM principals that may assume the team operator role")
    training: TrainingFleet
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=10)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_name(v, 16)


class PlatformConfig(_Strict):
    platform: Platform
    teams: list[Team] = Field(min_length=1, max_length=200)

    def team(self, name: str) -> Team:
        for t in self.teams:
            if t.name == name:
                return t
        raise UserInputError([f"--team: no team {name!r} in the config (choose one of {self.team_names})"])

    @property
    def team_names(self) -> list[str]:
        return [t.name for t in self.teams]


M = TypeVar("M", bound=BaseModel)


def _validate_leniently(model: type[M], raw: Any) -> tuple[M | None, frozenset[str]]:
    """``raw`` as ``model``, else as ``model`` without its invalid top-level fields (which are named), so
    checks across fields can run on what is valid while the field errors are reported."""
    try:
        return model.model_validate(raw), frozenset()
    except ValidationError as exc:
        bad = frozenset(str(e["loc"][0]) for e in exc.errors() if e["loc"])
    if not isinstance(raw, dict) or not bad:
        return None, bad
    try:
        return model.model_validate({k: v for k, v in raw.items() if k not in bad}), bad
    except ValidationError:
        return None, bad


@dataclass(frozen=True)
class _Validated:
    """What a config's checks across fields read: the valid parts of it, and names as they were given."""

    platform: Platform | None
    invalid_platform_fields: frozenset[str]
    team_names: list[tuple[int, str]]                          # (team index, name)
    endpoint_names: list[tuple[int, str, list[tuple[int, str]]]]  # (team index, team name, [(index, name)])
    fleets: list[TrainingFleet]                                 # the training fleets that are valid
    valid_endpoints: list[tuple[str, Endpoint]]                 # (path, endpoint) of those that are valid

    @classmethod
    def of_config(cls, cfg: PlatformConfig) -> _Validated:
        return cls(cfg.platform, frozenset(), list(enumerate(cfg.team_names)),
                   [(i, t.name, list(enumerate(e.name for e in t.endpoints))) for i, t in enumerate(cfg.teams)],
                   [t.training for t in cfg.teams],
                   [(f"teams[{i}].endpoints[{j}]", e) for i, t in enumerate(cfg.teams)
                    for j, e in enumerate(t.endpoints)])

    @classmethod
    def of_data(cls, data: dict[str, Any]) -> _Validated:
        """From a config that failed validation: its names as given, and whatever parts validate."""
        platform, invalid = _validate_leniently(Platform, data.get("platform"))
        raw_teams = data.get("teams")
        teams = [(i, t) for i, t in enumerate(raw_teams) if isinstance(t, dict)] if isinstance(raw_teams, list) else []
        names = [(i, t["name"]) for i, t in teams if isinstance(t.get("name"), str)]
        endpoints = [(i, str(t.get("name")), [(j, e["name"]) for j, e in enumerate(t["endpoints"])
                                              if isinstance(e, dict) and isinstance(e.get("name"), str)])
                     for i, t in teams if isinstance(t.get("endpoints"), list)]
        fleets = []
        for _, t in teams:
            fleet, bad = _validate_leniently(TrainingFleet, t.get("training"))
            if fleet is not None and not bad & {"instance_types", "max_instances"}:
                fleets.append(fleet)
        valid_endpoints = []
        for i, t in teams:
            for j, raw in enumerate(t["endpoints"] if isinstance(t.get("endpoints"), list) else []):
                ep, bad = _validate_leniently(Endpoint, raw)
                if ep is not None and not bad:
                    valid_endpoints.append((f"teams[{i}].endpoints[{j}]", ep))
        return cls(platform, invalid, names, endpoints, fleets, valid_endpoints)


def cross_field_problems(cfg: PlatformConfig) -> list[str]:
    """Checks that span several fields, each as a one-line problem with its path."""
    return _problems_across(_Validated.of_config(cfg))


def _problems_across(v: _Validated) -> list[str]:
    problems = _platform_problems(v.platform, v.invalid_platform_fields) if v.platform else []
    seen: dict[str, int] = {}
    for i, name in v.team_names:
        if name in seen:
            problems.append(f"teams[{i}].name: {name!r} is already used by teams[{seen[name]}] "
                            "(team names must be unique)")
        seen.setdefault(name, i)
    for i, team, endpoints in v.endpoint_names:
        endpoint_seen: set[str] = set()
        for j, name in endpoints:
            if name in endpoint_seen:
                problems.append(f"teams[{i}].endpoints[{j}].name: {name!r} is used twice in team "
                                f"{team!r} (endpoint names must be unique per team)")
            endpoint_seen.add(name)
    for where, ep in v.valid_endpoints:
        problems += exposure_problems(ep, where)
    if v.platform and v.platform.max_gpus is not None and "max_gpus" not in v.invalid_platform_fields:
        # With invalid fleets left out the sum is a lower bound: over the quota is still over.
        total = sum(f.max_gpus for f in v.fleets)
        if total > v.platform.max_gpus:
            problems.append(f"teams: training fleets may use {total} GPUs in all, over platform.max_gpus "
                            f"{v.platform.max_gpus} (lower teams[*].training.max_instances or raise max_gpus)")
    return problems


def _platform_problems(p: Platform, invalid: frozenset[str]) -> list[str]:
    problems: list[str] = []
    if not invalid & {"region", "dr_region"} and p.dr_region and p.dr_region == p.region:
        problems.append(f"platform.dr_region: {p.dr_region!r} equals platform.region "
                        "(pick a different region for disaster recovery, or remove dr_region)")
    subnets_needed = p.az_count * 2
    prefix = ipaddress.IPv4Network(p.vpc_cidr).prefixlen
    if not invalid & {"vpc_cidr", "az_count"} and 2 ** (24 - prefix) < subnets_needed:
        problems.append(f"platform.vpc_cidr: {p.vpc_cidr} has room for {2 ** (24 - prefix)} /24 subnets, "
                        f"{subnets_needed} needed for {p.az_count} AZs (use a larger range or fewer AZs)")
    return problems


def exposure_problems(ep: Endpoint, where: str) -> list[str]:
    """An endpoint reachable from the internet must be TLS-only and allow-listed, unless declared public."""
    anywhere = [c for c in ep.allowed_cidrs if ipaddress.IPv4Network(c).prefixlen == 0]
    problems = []
    if anywhere and not ep.public:
        problems.append(f"{where}.allowed_cidrs: {anywhere[0]!r} lets anyone on the internet connect "
                        "(list your clients' networks, or set public: true if the endpoint is meant to be public)")
    if not ep.internet_facing:
        if ep.public:
            problems.append(f"{where}.public: only an internet-facing endpoint can be public "
                            "(remove public, or set internet_facing: true)")
        return problems
    if ep.certificate_arn is None:
        problems.append(f"{where}.certificate_arn: an internet-facing endpoint serves HTTPS only and needs a "
                        "certificate (set it to an ACM certificate ARN, or set internet_facing: false)")
    if not ep.client_cidrs:
        problems.append(f"{where}.allowed_cidrs: an internet-facing endpoint needs a client allow-list "
                        "(list your clients' networks, e.g. ['203.0.113.0/24'], or set public: true)")
    return problems


_FIX_HINTS = {
    "missing": "add it",
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "int_from_float": "use a whole number",
    "float_parsing": "use a number",
    "float_type": "use a number",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "string_type": "use a quoted string",
    "list_type": "use a YAML list",
    "model_type": "use a YAML mapping of fields",
    "dict_type": "use a YAML mapping of fields",
    "model_attributes_type": "use a YAML mapping of fields",
    "too_short": "add at least one entry",
    "too_long": "use fewer entries",
    "greater_than_equal": "raise it",
    "less_than_equal": "lower it",
    "string_pattern_mismatch": "check the format",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not re.fullmatch(r"[A-Za-z_][\w-]*", part):
            out += f"[{part!r}]"  # keys with odd characters stay readable on one line
        else:
            out += f".{part}" if out else part
    return out or "config"


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names allowed at a location, to suggest a fix for a misspelt key."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        ann = field.annotation if field else None
        args = getattr(ann, "__args__", ()) or (ann,)
        current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(current.model_fields) if current is not None else []


def _error_line(model: type[BaseModel], err: Any) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc), n=1)
        fix = f"did you mean {close[0]!r}?" if close else "remove it"
        return f"{_path(loc)}: unknown field ({fix})"
    if kind in ("literal_error", "enum"):
        return f"{_path(loc)}: {msg}"
    if kind == "value_error" or msg.rstrip().endswith(")"):
        return f"{_path(loc)}: {msg}"
    got = "" if kind == "missing" else f", got {err.get('input')!r:.60}"
    return f"{_path(loc)}: {msg}{got} ({_FIX_HINTS.get(kind, 'fix the value')})"


def parse_config(data: Any, source: str = DEFAULT_CONFIG) -> PlatformConfig:
    """Validate already-parsed YAML data, raising UserInputError with every problem."""
    if not isinstance(data, dict):
        raise UserInputError([f"{source}: the top level must be a mapping with 'platform' and 'teams' "
                              "(see examples/gpufleet.yaml)"])
    try:
        cfg = PlatformConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_error_line(PlatformConfig, e) for e in exc.errors()]
        # The checks across fields run on the valid parts, so one run reports every problem.
        lines += _problems_across(_Validated.of_data(data))
        raise UserInputError(list(dict.fromkeys(lines))) from None
    problems = cross_field_problems(cfg)
    if problems:
        raise UserInputError(problems)
    return cfg


def parse_config_text(text: str, source: str = DEFAULT_CONFIG) -> PlatformConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise UserInputError([f"{where}: not valid YAML: {exc.problem} (fix the syntax there)"]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise UserInputError([f"{source}: not valid YAML: {exc} (fix the syntax)"]) from None
    return parse_config(data, source)


def load_config(path: str | Path = DEFAULT_CONFIG) -> PlatformConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError([f"{path}: no such file (create it from examples/gpufleet.yaml, "
                              "or pass --config)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError([f"{path}: cannot read it ({exc})"]) from None
    return parse_config_text(text, str(path))


Role = Literal["training", "serving"]
