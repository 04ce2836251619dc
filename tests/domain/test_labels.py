from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidLabel
from domain.labels import MAX_LABEL_CHARS, label_key, normalise_label, split_label_batch

FORBIDDEN = ['"', "\\", "%", ">", "<", "!", "\u201c", "\u201d", "\u2018", "\u2019"]
FORBIDDEN += [
    "\u201a",
    "\u201e",
    "\u00ab",
    "\u00bb",
    "\u2039",
    "\u203a",
    "\uff02",
    "\u2032",
    "\u2033",
]


@pytest.mark.parametrize("char", FORBIDDEN)
def test_label_contains_forbidden(char: str) -> None:
    with pytest.raises(InvalidLabel) as caught:
        normalise_label(f"Big{char}Sale")
    name = f"Big{char}Sale"
    assert str(caught.value) == f"label {name!r} contains {char!r}, which labels may not contain"


@pytest.mark.parametrize("char", FORBIDDEN)
def test_label_starts_with_forbidden(char: str) -> None:
    with pytest.raises(InvalidLabel) as caught:
        normalise_label(f"{char}Sale")
    assert f"starts with {char!r}" in str(caught.value)


@pytest.mark.parametrize("raw", ["", " ", "\t  \n"])
def test_label_empty_or_spaces(raw: str) -> None:
    with pytest.raises(InvalidLabel) as caught:
        normalise_label(raw)
    assert "is empty or only spaces" in str(caught.value)


def test_label_trimmed() -> None:
    assert normalise_label("  Cart Recovery \t") == "Cart Recovery"


def test_label_length_limit() -> None:
    assert normalise_label("x" * MAX_LABEL_CHARS) == "x" * MAX_LABEL_CHARS
    with pytest.raises(InvalidLabel) as caught:
        normalise_label("x" * (MAX_LABEL_CHARS + 1))
    assert "has 65 characters; a label may have at most 64" in str(caught.value)


def test_label_length_counts_trimmed() -> None:
    assert normalise_label(" " + "x" * MAX_LABEL_CHARS + " ") == "x" * MAX_LABEL_CHARS


def test_label_allowed_punctuation() -> None:
    for name in ["Score-Updates", "Q&A", "50 off", "Re:engage", "Ünïcødé", "a/b", "'single'"]:
        assert normalise_label(name) == name


def test_label_key_ignores_case() -> None:
    assert label_key("Onboarding") == label_key("ONBOARDING ") == label_key("onboarding")


def test_batch_mix() -> None:
    accepted, rejected = split_label_batch(
        ["Onboarding", "Sale!", "  ", "onboarding", "Reengage", "Cart"], existing_keys={"cart"}
    )
    assert accepted == ["Onboarding", "Reengage"]
    assert [r.name for r in rejected] == ["Sale!", "  ", "onboarding", "Cart"]
    assert rejected[0].reason == "label 'Sale!' contains '!', which labels may not contain"
    assert "already exists" in rejected[2].reason
    assert "already exists" in rejected[3].reason


@given(st.text(max_size=80))
def test_label_rules_property(raw: str) -> None:
    name = unicodedata.normalize("NFC", raw).strip()
    visible = not any(unicodedata.category(c) in ("Cc", "Cf") for c in name)
    valid = visible and 0 < len(name) <= MAX_LABEL_CHARS and not any(c in FORBIDDEN for c in name)
    if valid:
        assert normalise_label(raw) == name
    else:
        with pytest.raises(InvalidLabel):
            normalise_label(raw)


@pytest.mark.parametrize(
    "quote", ["\u201e", "\u201a", "\u00ab", "\u00bb", "\u2039", "\u203a", "\uff02", "\u2032"]
)
def test_other_quotes_rejected(quote: str) -> None:
    with pytest.raises(InvalidLabel) as caught:
        normalise_label(f"Sale {quote}now")
    assert (
        caught.value.message
        == f"label 'Sale {quote}now' contains {quote!r}, which labels may not contain"
    )


@pytest.mark.parametrize(
    ("char", "code"), [("\u200b", "200B"), ("\x00", "0000"), ("\n", "000A"), ("\u202e", "202E")]
)
def test_invisible_characters_rejected(char: str, code: str) -> None:
    with pytest.raises(InvalidLabel) as caught:
        normalise_label(f"Sale{char}now")
    assert caught.value.message.endswith(f"contains the control or format character U+{code}")


def test_composed_and_decomposed_same_key() -> None:
    composed, decomposed = "Caf\u00e9", "Cafe\u0301"
    assert normalise_label(decomposed) == composed
    assert label_key(composed) == label_key(decomposed)
