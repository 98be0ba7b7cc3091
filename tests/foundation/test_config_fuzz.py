"""Fuzzing: any YAML text and any field values either load or give one-line errors, never an exception."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.config import parse_config, parse_config_text
from gpufleet.errors import UserInputError
from tests.foundation.test_config import example

BASE = example()

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True), st.text(max_size=30),
                    st.sampled_from(["g5.xlarge", "us-east-1", "10.1.0.0/16", "ami-0123456789abcdef0", "a-b"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def assert_loads_or_explains(load: Any) -> None:
    try:
        load()
    except UserInputError as exc:
        assert exc.problems
        for line in exc.problems:
            assert "\n" not in line and ": " in line, line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=4))
def test_random_field_values_load_or_explain(mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = copy.deepcopy(BASE)
    for path, value in mutations:
        try:
            _set(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent of this path
    assert_loads_or_explains(lambda: parse_config(data))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_loads_or_explains(text: str) -> None:
    assert_loads_or_explains(lambda: parse_config_text(text))


@settings(max_examples=200, deadline=None)
@given(values)
def test_random_yaml_documents_load_or_explain(doc: Any) -> None:
    text = yaml.safe_dump({"platform": doc, "teams": doc})
    assert_loads_or_explains(lambda: parse_config_text(text))
