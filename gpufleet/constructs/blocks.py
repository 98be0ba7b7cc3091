"""Nested Terraform blocks written as plain dicts.

jsii converts a dict passed straight to a struct parameter (snake_case keys), but hands the elements
of a list over as raw maps, where it only recognizes camelCase keys and silently drops the rest.
``blocks`` camel-cases every key inside lists, so constructs can write one style throughout.
"""

from __future__ import annotations

from typing import Any


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _raw(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(k): _raw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_raw(v) for v in value]
    return value


def blocks(value: Any) -> Any:
    """``value`` ready for a jsii parameter: lists (and everything in them) camel-cased."""
    if isinstance(value, list):
        return [_raw(v) for v in value]
    if isinstance(value, dict):
        return {k: blocks(v) for k, v in value.items()}
    return value
