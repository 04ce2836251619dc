"""Message templates: sandbox limits, runtime errors, HTML escaping and defaults."""

from __future__ import annotations

import pytest

from domain.errors import InvalidValue
from domain.templates import render_template
from schemas.campaign_message import PushMessage


def _error(text: str) -> str:
    with pytest.raises(InvalidValue) as caught:
        render_template(text, {"Name": "Ada"}, {}, ("what", "body"))
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError: division by zero"),
        ("{{ profile.Name + 1 }}", "TypeError: can only concatenate str"),
        ("{{ [].pop() }}", "IndexError: pop from empty list"),
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "RecursionError"),
        ("{% for i in range(10**9) %}x{% endfor %}", "OverflowError: Range too big"),
        ("{% for i in range(10**6) %}x{% endfor %}", "OverflowError"),
    ],
)
def test_runtime_errors_become_invalid(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_large_exponent_blocked() -> None:
    assert "exponent 5000 is larger than 64" in _error("{{ 10**5000 }}")


def test_huge_repetition_blocked() -> None:
    assert "the product is longer than 100000 characters" in _error("{{ 'a' * 50000000 }}")


def test_rendered_length_bounded() -> None:
    text = "{% for i in range(2000) %}" + "x" * 60 + "{% endfor %}"
    assert "more than 100000" in _error(text)


def test_html_body_escapes_traits() -> None:
    html = render_template(
        "<p>Hi {{ profile.Name }}</p>", {"Name": "<b>Bob</b>"}, {}, ("html_body",)
    )
    assert html == "<p>Hi &lt;b&gt;Bob&lt;/b&gt;</p>"


def test_text_body_keeps_traits() -> None:
    text = render_template("Hi {{ profile.Name }}", {"Name": "<b>Bob</b>"}, {}, ("text_body",))
    assert text == "Hi <b>Bob</b>"


def test_null_trait_takes_default() -> None:
    assert render_template("Hi {{ profile.Name }}", {"Name": None}, {"Name": "there"}) == "Hi there"


def test_nested_key_values_checked() -> None:
    with pytest.raises(ValueError) as caught:
        PushMessage(title="t", body="b", key_values={"k": "{{ broken"})
    assert "key_values" in str(caught.value)
