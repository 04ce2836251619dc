"""Durations in contracts: ISO 8601 text such as "PT1H" or "P7D", or a number of seconds."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["Duration"]


def _not_boolean(value: Any) -> Any:
    # pydantic reads `true` as one second, which is never what a campaign means.
    if isinstance(value, bool):
        raise ValueError(
            f"expected a duration such as 'PT1H' or a number of seconds, got {str(value).lower()}"
        )
    return value


Duration = Annotated[timedelta, BeforeValidator(_not_boolean)]
