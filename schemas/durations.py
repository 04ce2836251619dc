"""Durations in contracts: ISO 8601 text such as "PT1H" or "P7D", or a number of seconds."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

__all__ = ["durations_reject_booleans"]


def _not_boolean(value: Any) -> Any:
    # pydantic reads `true` as one second, which is never what a campaign means.
    if isinstance(value, bool):
        raise ValueError(
            f"expected a duration such as 'PT1H' or a number of seconds, got {str(value).lower()}"
        )
    return value


def durations_reject_booleans(*fields: str) -> Any:
    """Return a validator of a model that rejects booleans in the duration `fields`.

    A validator of the field, rather than of an annotated type, keeps pydantic's own
    messages for the fields' bounds, such as "less than or equal to 7 days".
    """
    return field_validator(*fields, mode="before")(_not_boolean)
