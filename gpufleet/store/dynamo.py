"""The one DynamoDB codec: Python <-> DynamoDB values, timestamps, and conditional-write failures.

Every table module (jobs, models, endpoints) and the registry export convert through these, so a float
or a timestamp is written the same way everywhere.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

Record = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def age_s(iso: str | None) -> float:
    """Seconds since ``iso`` (infinite when missing or unreadable: treat as stale)."""
    try:
        then = datetime.strptime(str(iso), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return float("inf")
    return time.time() - then


def to_item(value: Any) -> Any:
    """Python -> DynamoDB: floats become Decimals (boto3 refuses floats)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_item(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_item(v) for v in value]
    return value


def from_item(value: Any) -> Any:
    """DynamoDB -> Python: Decimals become ints or floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_item(v) for v in value]
    return value


def is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def read_pages(call: Any, limit_one_page: bool = False, **kwargs: Any) -> list[Record]:
    """Every item of a ``Table.scan`` or ``Table.query`` (``call``), page by page, converted to Python.

    ``limit_one_page`` stops after the first page (a query with ``Limit`` wants only its top items).
    """
    items: list[Record] = []
    while True:
        page = call(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page or limit_one_page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
