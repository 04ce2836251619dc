"""Rules for message label names.

A label is trimmed, must keep at least one visible character, may be at most
`MAX_LABEL_CHARS` long, and may not contain any of `FORBIDDEN_LABEL_CHARS`. Two labels
that differ only in case are the same label, so uniqueness is checked on `label_key`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from domain.errors import InvalidLabel

__all__ = [
    "FORBIDDEN_LABEL_CHARS",
    "MAX_LABEL_CHARS",
    "LabelRejection",
    "label_key",
    "normalise_label",
    "split_label_batch",
]

MAX_LABEL_CHARS = 64

# The typographic quotes are included because editors and word processors turn a typed
# `"` into them, and the rule is meant to keep quotes of any kind out: low-9, guillemet,
# full-width and prime forms too.
FORBIDDEN_LABEL_CHARS = (
    '"\\%><!\u201c\u201d\u2018\u2019\u201a\u201e\u00ab\u00bb\u2039\u203a\uff02\u2032\u2033'
)


# Control characters (NUL, newline) and format characters (zero-width space, right-to-left
# override) render as nothing or reorder text, so two labels could look alike.
_INVISIBLE = frozenset({"Cc", "Cf"})


@dataclass(frozen=True)
class LabelRejection:
    """One label of a batch that was not created, with the reason."""

    name: str
    reason: str


def label_key(name: str) -> str:
    """Return the case-insensitive key under which a label is unique."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def normalise_label(raw: str) -> str:
    """Trim `raw` and check it against the label rules.

    Raises:
        InvalidLabel: the name is empty, too long, or contains a forbidden character.
    """
    # Composed and decomposed spellings of one name must be the same label.
    name = unicodedata.normalize("NFC", raw).strip()
    invisible = next((char for char in name if unicodedata.category(char) in _INVISIBLE), None)
    if invisible is not None:
        raise InvalidLabel(raw, f"contains the control or format character U+{ord(invisible):04X}")
    if not name:
        raise InvalidLabel(raw, "is empty or only spaces; a label needs a visible character")
    if len(name) > MAX_LABEL_CHARS:
        raise InvalidLabel(
            raw, f"has {len(name)} characters; a label may have at most {MAX_LABEL_CHARS}"
        )
    for char in name:
        if char in FORBIDDEN_LABEL_CHARS:
            where = "starts with" if name.startswith(char) else "contains"
            raise InvalidLabel(raw, f"{where} {char!r}, which labels may not contain")
    return name


def split_label_batch(
    raws: Iterable[str], existing_keys: set[str]
) -> tuple[list[str], list[LabelRejection]]:
    """Split a batch of requested labels into names to create and rejections.

    A name is rejected when it breaks a rule, when a label with the same key exists, or
    when an earlier name of the same batch has the same key.
    """
    accepted: list[str] = []
    rejected: list[LabelRejection] = []
    seen = set(existing_keys)
    for raw in raws:
        try:
            name = normalise_label(raw)
        except InvalidLabel as error:
            rejected.append(LabelRejection(raw, error.message))
            continue
        if label_key(name) in seen:
            reason = f"label {name!r} already exists (labels are unique regardless of case)"
            rejected.append(LabelRejection(raw, reason))
            continue
        seen.add(label_key(name))
        accepted.append(name)
    return accepted, rejected
