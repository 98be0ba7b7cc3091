"""IAM condition blocks judged as AWS documents them (the operators gpufleet's policies use)."""

from __future__ import annotations

import pytest

from gpufleet.audit.conditions import UnsupportedCondition, conditions_hold

CONDITIONAL_PUT = {"Null": {"s3:if-none-match": "false"}}
UNCONDITIONAL_CREATION = {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}}


def test_null_false_holds_only_when_the_request_carries_the_key() -> None:
    assert conditions_hold(CONDITIONAL_PUT, {"s3:if-none-match": "*"})
    assert not conditions_hold(CONDITIONAL_PUT, {})
    assert not conditions_hold(CONDITIONAL_PUT, {"s3:if-match": '"etag"'})   # a conditional overwrite


def test_null_true_holds_only_when_the_key_is_absent() -> None:
    assert conditions_hold({"Null": {"s3:if-none-match": "true"}}, {})
    assert not conditions_hold({"Null": {"s3:if-none-match": "true"}}, {"s3:if-none-match": "*"})


def test_every_operator_and_key_of_a_block_must_hold() -> None:
    assert conditions_hold(UNCONDITIONAL_CREATION, {"s3:ObjectCreationOperation": "true"})
    # A multipart upload's create and parts create nothing: the guard does not apply to them.
    assert not conditions_hold(UNCONDITIONAL_CREATION, {"s3:ObjectCreationOperation": "false"})
    assert not conditions_hold(UNCONDITIONAL_CREATION, {"s3:ObjectCreationOperation": "true",
                                                        "s3:if-none-match": "*"})


def test_a_key_the_request_lacks_fails_every_operator_but_null_and_if_exists() -> None:
    assert not conditions_hold({"StringEquals": {"cloudwatch:namespace": "gpufleet"}}, {})
    assert not conditions_hold({"Bool": {"s3:ObjectCreationOperation": "false"}}, {})
    assert not conditions_hold({"StringNotEquals": {"aws:SourceAccount": "1"}}, {})
    assert conditions_hold({"StringEqualsIfExists": {"cloudwatch:namespace": "gpufleet"}}, {})


def test_values_are_alternatives_and_key_names_ignore_case() -> None:
    block = {"StringEquals": {"cloudwatch:namespace": ["gpufleet", "other"]}}
    assert conditions_hold(block, {"CloudWatch:Namespace": "other"})
    assert not conditions_hold(block, {"cloudwatch:namespace": "Gpufleet"})   # values are case-sensitive
    assert conditions_hold({"Bool": {"s3:ObjectCreationOperation": "False"}}, {"s3:objectcreationoperation": "false"})
    assert conditions_hold({"StringNotEquals": {"k": ["a", "b"]}}, {"k": "c"})
    assert not conditions_hold({"StringNotEquals": {"k": ["a", "b"]}}, {"k": "b"})
    assert conditions_hold({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::1:role/p-*"}},
                           {"aws:PrincipalArn": "arn:aws:iam::1:role/p-t-training"})


def test_an_operator_it_does_not_judge_is_reported_not_guessed() -> None:
    with pytest.raises(UnsupportedCondition, match="DateGreaterThan"):
        conditions_hold({"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, {})
