"""The job spec: defaults, and one actionable line per problem for any broken spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.errors import UserInputError
from gpufleet.schema.job_spec import load_job_spec, parse_job_spec
from tests.training.badspecs import MUTATIONS, NOT_MAPPINGS, base_spec, mutate


def test_minimal_spec_gets_safe_defaults() -> None:
    spec = parse_job_spec(base_spec("alpha"))
    assert (spec.instance_count, spec.gpus_per_instance, spec.procs_per_host) == (1, 0, 1)
    assert spec.checkpoint_uri is None and spec.model_name == "fuzz" and spec.metric_definitions == []


def test_example_digits_spec_is_valid() -> None:
    spec = load_job_spec(Path(__file__).parents[2] / "examples" / "training" / "digits" / "job.yaml")
    assert spec.hyperparameters["batch-size"] == 64 and spec.metric_definitions[0].name == "test_accuracy"


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("entry_point", "a/../up.py", "job spec: entry_point: 'a/../up.py' leaves the source directory (a relative path"),
    ("instance_count", 0, "job spec: instance_count: Input should be greater than or equal to 1 (an integer"),
    ("metric_definitions", [{"name": "a", "regex": "a"}],
     "job spec: metric_definitions.0.regex: regex has 0 capture groups, needs exactly 1 (a list of"),
    ("channels", {"Train": "s3://bucket/k"}, "job spec: channels: bad channel name 'Train' (a map of"),
    ("surprise", 1, "job spec: surprise: Extra inputs are not permitted (remove it"),
])
def test_each_problem_is_one_line_naming_the_field_and_the_fix(field: str, value: object, expected: str) -> None:
    with pytest.raises(UserInputError) as err:
        parse_job_spec(mutate(base_spec("alpha"), field, value))
    assert err.value.problems[0].startswith(expected)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.sampled_from(NOT_MAPPINGS),
    st.sampled_from(sorted(MUTATIONS)).flatmap(
        lambda f: st.sampled_from(MUTATIONS[f]).map(lambda v: mutate(base_spec("alpha"), f, v))),
    st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=8)), max_size=5),
))
def test_fuzzed_specs_are_rejected_with_one_line_reasons(spec: object) -> None:
    with pytest.raises(UserInputError) as err:
        parse_job_spec(spec, "spec.yaml")
    for problem in err.value.problems:
        assert problem.startswith("spec.yaml: ") and "\n" not in problem and problem.endswith(")")


def test_unreadable_spec_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserInputError) as err:
        load_job_spec(path)
    assert err.value.problems[0].startswith(f"{path}: unreadable job spec (")
    with pytest.raises(UserInputError, match="no such job spec"):
        load_job_spec(tmp_path / "missing.yaml")
