"""Edit ``gpufleet.yaml`` in place with ruamel.yaml's round-trip mode, so comments and layout survive."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gpufleet.config import PlatformConfig, parse_config_text
from gpufleet.errors import UserInputError


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)  # the layout of examples/gpufleet.yaml
    return yaml


def _flow(items: list[Any]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def team_entry(name: str, instance_types: list[str], max_instances: int, spot_percentage: int,
               endpoints: list[tuple[str, str]]) -> CommentedMap:
    team = CommentedMap(name=name)
    team["training"] = CommentedMap(instance_types=_flow(instance_types), max_instances=max_instances,
                                    spot_percentage=spot_percentage)
    team["endpoints"] = CommentedSeq([CommentedMap(name=ep, instance_type=t) for ep, t in endpoints])
    return team


def add_team(path: Path, team: CommentedMap) -> PlatformConfig:
    """Append ``team`` to the config at ``path``: validated before writing, written atomically, comments kept."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError([f"{path}: no such file (create it from examples/gpufleet.yaml, or pass --config)"]
                             ) from None
    parse_config_text(text, str(path))  # refuse to edit a config that is already broken
    yaml = _yaml()
    doc = yaml.load(text)
    if any(t.get("name") == team["name"] for t in doc["teams"]):
        raise UserInputError([f"team {team['name']!r}: already in {path} (pick another name, or edit it there)"])
    doc["teams"].append(team)
    doc["teams"].yaml_set_comment_before_after_key(len(doc["teams"]) - 1, before="\nadded by `gpufleet team add`",
                                                   indent=2)
    out = io.StringIO()
    yaml.dump(doc, out)
    cfg = parse_config_text(out.getvalue(), f"{path} (with team {team['name']})")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return cfg
