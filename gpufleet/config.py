"""The platform config: one YAML file (``gpufleet.yaml``) describing the platform and its teams.

It knows nothing of cdktf. ``load_config`` either returns a valid ``PlatformConfig`` or raises
``UserInputError`` listing every problem, one line each: ``<path>: <what is wrong> (<how to fix>)``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

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

DEFAULT_CONFIG = "gpufleet.yaml"
DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
KNOWN_REGIONS = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-west-1", "eu-west-2",
    "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
    "ap-south-1", "sa-east-1", "me-central-1", "il-central-1", "af-south-1",
]
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


def _region(value: str) -> str:
    if value in KNOWN_REGIONS:
        return value
    close = difflib.get_close_matches(value, KNOWN_REGIONS, n=1, cutoff=0.8)
    if close or not REGION.match(value):
        # A near miss of a known region is a typo; a well-formed unknown one may be a new region.
        hint = f"did you mean {close[0]!r}?" if close else "use an AWS region such as 'us-east-1'"
        raise ValueError(f"{value!r} is not an AWS region ({hint})")
    return value


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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_name(v, 12)

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


def cross_field_problems(cfg: PlatformConfig) -> list[str]:
    """Checks that span several fields, each as a one-line problem with its path."""
    problems: list[str] = []
    p = cfg.platform
    if p.dr_region and p.dr_region == p.region:
        problems.append(f"platform.dr_region: {p.dr_region!r} equals platform.region "
                        "(pick a different region for disaster recovery, or remove dr_region)")
    seen: dict[str, int] = {}
    for i, team in enumerate(cfg.teams):
        if team.name in seen:
            problems.append(f"teams[{i}].name: {team.name!r} is already used by teams[{seen[team.name]}] "
                            "(team names must be unique)")
        seen.setdefault(team.name, i)
        endpoint_seen: set[str] = set()
        for j, ep in enumerate(team.endpoints):
            if ep.name in endpoint_seen:
                problems.append(f"teams[{i}].endpoints[{j}].name: {ep.name!r} is used twice in team "
                                f"{team.name!r} (endpoint names must be unique per team)")
            endpoint_seen.add(ep.name)
            problems += exposure_problems(ep, f"teams[{i}].endpoints[{j}]")
    if p.max_gpus is not None:
        total = sum(t.training.max_gpus for t in cfg.teams)
        if total > p.max_gpus:
            problems.append(f"teams: training fleets may use {total} GPUs in all, over platform.max_gpus "
                            f"{p.max_gpus} (lower teams[*].training.max_instances or raise max_gpus)")
    subnets_needed = p.az_count * 2
    prefix = ipaddress.IPv4Network(p.vpc_cidr).prefixlen
    if 2 ** (24 - prefix) < subnets_needed:
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
        lines = (_error_line(PlatformConfig, e) for e in exc.errors())
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
