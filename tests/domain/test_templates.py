"""Message templates: sandbox limits, runtime errors, HTML escaping and defaults."""

from __future__ import annotations

import pytest

from domain.errors import InvalidValue
from domain.templates import render_template, render_tree
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


@pytest.mark.parametrize(
    ("value", "text", "html"),
    [
        (7, "v=7", "v=7"),
        (-2.5, "v=-2.5", "v=-2.5"),
        (1e100, "v=1e+100", "v=1e+100"),
        (float("nan"), "v=nan", "v=nan"),
        (True, "v=True", "v=True"),
        ([1, "a<b", None], "v=[1, 'a<b', None]", "v=[1, &#39;a&lt;b&#39;, None]"),
        (
            {"k": "O'Neil & co"},
            "v={'k': \"O'Neil & co\"}",
            "v={&#39;k&#39;: &#34;O&#39;Neil &amp; co&#34;}",
        ),
        ('x"y', 'v=x"y', "v=x&#34;y"),
    ],
)
def test_trait_types_render_as_jinja(value: object, text: str, html: str) -> None:
    profile = {"v": value}

    assert render_template("v={{ profile.v }}", profile, {}, ("text_body",)) == text
    assert render_template("v={{profile.v}}", profile, {}, ("html_body",)) == html


def test_missing_trait_error_unchanged() -> None:
    with pytest.raises(InvalidValue) as caught:
        render_template("Hi {{ profile.Name }}", {"Name": None}, {}, ("what", "title"))

    assert caught.value.message == (
        "cannot render 'Hi {{ profile.Name }}': 'dict object' has no attribute 'Name'; "
        "add the field to the profile or give it a default in `what.defaults`"
    )
    assert caught.value.fields[0].path == ("what", "title")


def test_unprintable_trait_error_unchanged() -> None:
    # Python 3.11 raises ValueError when it converts an int of more than 4300 digits
    # (the default limit) to text.
    with pytest.raises(InvalidValue) as caught:
        render_template("n={{ profile.n }}", {"n": 10**5000}, {}, ("what", "body"))

    assert caught.value.message.startswith(
        "cannot render 'n={{ profile.n }}': ValueError: Exceeds the limit (4300 digits)"
    )
    assert caught.value.fields[0].path == ("what", "body")


def test_long_trait_bounded() -> None:
    with pytest.raises(InvalidValue) as caught:
        render_template("Hi {{ profile.Name }}", {"Name": "x" * 100_000}, {}, ("title",))

    assert caught.value.message == "the rendered text is 100003 characters, more than 100000"


def test_long_static_text_bounded() -> None:
    with pytest.raises(InvalidValue) as caught:
        render_tree({"body": "x" * 100_001}, {}, {}, ("what",))

    assert caught.value.fields[0].path == ("what", "body")
    assert "the rendered text is 100001 characters" in caught.value.message


def test_dict_method_name_reads_method() -> None:
    # The sandbox reads an attribute before an item, so a trait named like a dict method
    # is hidden behind that method.
    rendered = render_template("{{ profile.items }}", {"items": "trait"}, {})

    assert rendered.startswith("<built-in method items of dict object")


def test_tree_keeps_order_and_constants() -> None:
    tree = {"b": "{{ profile.Name }}", "a": [1, 2.5, True, None, "x"], "c": {"d": "Hi"}}

    rendered = render_tree(tree, {"Name": "Ada"}, {})

    assert list(rendered) == ["b", "a", "c"]
    assert rendered == {"b": "Ada", "a": [1, 2.5, True, None, "x"], "c": {"d": "Hi"}}
