"""Ways a job spec goes wrong: every mutation here makes a valid spec invalid (or unrunnable)."""

from __future__ import annotations

import random
from typing import Any

MUTATIONS: dict[str, list[Any]] = {
    "name": ["", "UPPER", "-lead", "x" * 64, 7, None],
    "entry_point": ["/abs.py", "../up.py", "train.sh", "", None, "a/../../b.py"],
    "source": ["http://x/y.tar.gz", "s3://", 5],
    "instance_count": [0, -1, 65, "two", 1.5],
    "gpus_per_instance": [-1, 9, "all"],
    "max_runtime_s": [0, -5, 10**9, "1h"],
    "checkpoint_interval_s": [0, -1, "often"],
    "hyperparameters": [[1, 2], {"a b": 1}, {"x": {"nested": 1}}, "lr=1"],
    "channels": [{"Train": "s3://bucket/k"}, {"train": "/local/path"}, ["s3://bucket"]],
    "metric_definitions": [[{"name": "acc", "regex": "("}], [{"name": "acc", "regex": "acc"}],
                           [{"regex": "(x)"}], "acc"],
    "output_model_name": ["Bad_Name", 1],
    "checkpoint_uri": ["/tmp/ckpt", "s3:/one-slash"],
    "surprise": [True, "field"],
}
NOT_MAPPINGS: list[Any] = [None, "a string", [1, 2], 42]


def base_spec(team: str, source: str = "s3://some-bucket/code/x/source.tar.gz") -> dict[str, Any]:
    return {"name": "fuzz", "team": team, "source": source, "entry_point": "train.py"}


def mutate(spec: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    return {**spec, field: value}


def fuzzed_specs(team: str, count: int, seed: int = 7) -> list[Any]:
    """``count`` broken specs: one or two bad fields each, plus non-mappings and a missing required field."""
    rng = random.Random(seed)
    specs: list[Any] = list(NOT_MAPPINGS)
    specs.append({k: v for k, v in base_spec(team).items() if k != "entry_point"})
    specs.append({**base_spec(team), "team": "some-other-team"})
    while len(specs) < count:
        spec = base_spec(team)
        for field in rng.sample(sorted(MUTATIONS), rng.choice((1, 2))):
            spec = mutate(spec, field, rng.choice(MUTATIONS[field]))
        specs.append(spec)
    return specs
