"""Text that the control-plane database stores in, or looks up by, a text column."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

__all__ = ["StoredText", "reject_nul"]


def reject_nul(text: str) -> str:
    """Raise a validation error when `text` contains the NUL character, else return `text`.

    PostgreSQL's text columns cannot store U+0000 (psycopg raises DataError). The rule holds
    on SQLite too, so that a request gets the same response on either database.
    """
    if "\x00" in text:
        raise PydanticCustomError(
            "string_nul_character",
            "must not contain the NUL character (U+0000), which the control-plane database "
            "cannot store",
        )
    return text


StoredText = Annotated[str, AfterValidator(reject_nul)]
