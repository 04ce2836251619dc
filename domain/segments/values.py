"""Comparisons of JSON values from traits and event properties, as segment rules define them.

The type rules are in `docs/segments.md`, and `queries.segments` mirrors them in SQL. A
number is an int or a float but not a bool, and numbers compare as 64-bit floats. Strings
compare exactly and only with strings, and booleans only with booleans. An ordered
comparison (gt, gte, lt, lte, between) holds only between two numbers. A missing key and a
JSON null are both absent, and every operator except `not_exists` and `is_empty` is false
on an absent value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["ValuePredicate", "local_day_of", "value_predicate"]

ValuePredicate = Callable[[Any], bool]

# Accepted date traits: a calendar date, or a datetime with seconds and a UTC offset.
_DATE = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
DATE_PATTERN = _DATE.pattern
DATETIME_PATTERN = _DATETIME.pattern


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def equals(value: Any, operand: Any) -> bool:
    """Compare by the type rules: no coercion between numbers, strings and booleans."""
    if isinstance(operand, bool):
        return isinstance(value, bool) and value is operand
    if is_number(operand):
        return is_number(value) and float(value) == float(operand)
    if isinstance(operand, str):
        return isinstance(value, str) and value == operand
    return False


def _contains(value: Any, operand: Any) -> bool:
    if isinstance(value, str):
        return isinstance(operand, str) and operand in value
    if isinstance(value, list):
        return any(equals(item, operand) for item in value)
    return False


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def value_predicate(op: str, operand: Any) -> ValuePredicate:
    """Build the test of one operator against a value; `None` stands for an absent value."""
    if op == "exists":
        return lambda value: value is not None
    if op == "not_exists":
        return lambda value: value is None
    if op == "is_empty":
        return _is_empty
    if op == "eq":
        return lambda value: equals(value, operand)
    if op == "ne":
        return lambda value: value is not None and not equals(value, operand)
    if op in ("in", "not_in"):
        return _membership(op, list(operand))
    if op == "contains":
        return lambda value: _contains(value, operand)
    if op == "starts_with":
        return lambda value: isinstance(value, str) and value.startswith(operand)
    return _ordered(op, operand)


def _membership(op: str, operands: list[Any]) -> ValuePredicate:
    def found(value: Any) -> bool:
        return any(equals(value, operand) for operand in operands)

    if op == "in":
        return found
    return lambda value: value is not None and not found(value)


def _ordered(op: str, operand: Any) -> ValuePredicate:
    if op == "between":
        low, high = (float(bound) for bound in operand)
        return lambda value: is_number(value) and low <= float(value) <= high
    if not is_number(operand):
        return lambda value: False
    bound = float(operand)
    compare: dict[str, Callable[[float], bool]] = {
        "gt": lambda number: number > bound,
        "gte": lambda number: number >= bound,
        "lt": lambda number: number < bound,
        "lte": lambda number: number <= bound,
    }
    test = compare[op]
    return lambda value: is_number(value) and test(float(value))


def local_day_of(value: Any, zone: ZoneInfo) -> int | None:
    """Return the local calendar day (a proleptic ordinal) of a date trait, or None.

    A `YYYY-MM-DD` string is taken as that day; a datetime string with an offset is
    converted to `zone` first. Any other value, or an impossible date, gives None.
    """
    if not isinstance(value, str):
        return None
    try:
        if _DATE.fullmatch(value):
            return date.fromisoformat(value).toordinal()
        if _DATETIME.fullmatch(value):
            return datetime.fromisoformat(value).astimezone(zone).date().toordinal()
    except ValueError:
        return None
    return None
