"""IAM ``Condition`` blocks judged as AWS judges them, for the operators gpufleet's policies use.

moto's evaluator judges only ``StringEquals``, treats a key the request lacks as a match, and checks
conditions before resources, so a conditioned Deny denies every request. Here (AWS IAM User Guide,
"IAM JSON policy elements: Condition operators"):

- every operator of a block must hold, and within an operator every key (AND); a key holds when the
  request's value matches any of the listed values (OR);
- a key the request lacks fails every operator except ``Null`` (which tests exactly that) and the
  ``...IfExists`` forms (which then hold);
- condition key names are case-insensitive, values are compared as the operator says.

An operator not listed here is reported, never guessed: ``UnsupportedCondition``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

Match = Callable[[str, str], bool]   # (listed value, request value) -> holds


def _string_like(pattern: str, value: str) -> bool:
    # IAM's wildcards are * and ? only; fnmatch's [...] classes are escaped away.
    return fnmatchcase(value, pattern.replace("[", "[[]"))


def _bool(listed: str, value: str) -> bool:
    return listed.lower() == value.lower()


MATCHERS: dict[str, Match] = {
    "StringEquals": lambda listed, value: listed == value,
    "StringNotEquals": lambda listed, value: listed == value,
    "StringEqualsIgnoreCase": lambda listed, value: listed.lower() == value.lower(),
    "StringLike": _string_like,
    "StringNotLike": _string_like,
    "ArnEquals": _string_like,
    "ArnLike": _string_like,
    "ArnNotEquals": _string_like,
    "ArnNotLike": _string_like,
    "Bool": _bool,
}
# Negated operators hold when no listed value matches (and, as the others, fail on an absent key).
NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


class UnsupportedCondition(ValueError):
    """A policy uses a condition operator this evaluator does not judge."""


def _values(listed: Any) -> list[str]:
    return [str(v) for v in (listed if isinstance(listed, list) else [listed])]


def _key_holds(operator: str, listed: Sequence[str], value: str | None) -> bool:
    if operator == "Null":
        return any(_bool(v, "true" if value is None else "false") for v in listed)
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in MATCHERS:
        raise UnsupportedCondition(f"condition operator {operator!r} is not judged by gpufleet audit "
                                   f"(judged: Null, {', '.join(MATCHERS)}, and their IfExists forms)")
    if value is None:
        return if_exists
    matched = any(MATCHERS[base](v, value) for v in listed)
    return not matched if base in NEGATED else matched


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    """Whether a statement's ``Condition`` block holds for a request carrying ``context`` (key -> value)."""
    by_key = {k.lower(): v for k, v in context.items()}
    return all(_key_holds(operator, _values(listed), by_key.get(key.lower()))
               for operator, keys in condition.items() for key, listed in keys.items())
