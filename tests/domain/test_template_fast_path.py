"""Direct filling of `{{ profile.NAME }}` templates, and render plans cached per variant.

The property tests compare every render with Jinja's own rendering of the same template:
the text on success, else the InvalidValue message and path.
"""

from __future__ import annotations

import gc
import re
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from domain import templates
from domain.delivery import rendering
from domain.delivery.rendering import render_variant
from domain.errors import InvalidValue
from domain.templates import RenderPlan, render_template
from schemas.campaign_message import MessageVariant

# Trait names: plain ones, Jinja keywords, names of dict methods (which the sandbox
# resolves to the method), underscores and a non-ASCII identifier.
NAMES = [
    "Name",
    "city",
    "age",
    "tags",
    "x1",
    "_private",
    "__extra__",
    "None",
    "true",
    "if",
    "in",
    "not",
    "items",
    "get",
    "keys",
    "Ünïcode",
    "absent",
]

_LITERAL_CHARS = list("ab Z09<>&\"'}.|-%#\n\té中😀") + ["\u00a0", "\u2028", "\x00"]
# Mostly characters that keep a text on the fast path, sometimes any character at all.
literal_texts = st.text(
    alphabet=st.one_of(*[st.sampled_from(_LITERAL_CHARS)] * 9, st.characters(codec="utf-8")),
    max_size=8,
)
# Mostly the few names that profiles contain often, so many templates render.
names = st.one_of(st.sampled_from(["Name", "city", "age"]), st.sampled_from(NAMES))
# Spaces keep a placeholder on the fast path, but a tab or a newline sends it to Jinja.
inner_spaces = st.sampled_from(["", " ", " ", "  ", "   "] * 8 + ["\t", "\n"])
placeholders = st.builds(
    lambda before, name, after: "{{" + before + "profile." + name + after + "}}",
    inner_spaces,
    names,
    inner_spaces,
)
# Forms that only Jinja renders: filters, whitespace control, other syntax, stray braces
# and line endings that Jinja rewrites.
_OTHER_FORMS = [
    "{{ profile.%s | upper }}",
    "{{ profile.%s|e }}",
    "{{ profile.%s|string|length }}",
    "{{- profile.%s }}",
    "{{ profile.%s -}}",
    "{{+ profile.%s }}",
    "{{ profile['%s'] }}",
    "{{ profile.%s ~ '!' }}",
    "{{ profile.%s }}{# note #}",
    "{% if profile.%s is defined %}yes{% endif %}",
    "{%raw%}{{ profile.%s }}{%endraw%}",
    "{ profile.%s }",
    "{{{ profile.%s }}",
    "\r\n%s",
    "%s\r",
]
other_forms = st.builds(
    lambda form, name: form.replace("%s", name), st.sampled_from(_OTHER_FORMS), names
)
profile_only_templates = st.lists(st.one_of(literal_texts, placeholders), max_size=6).map("".join)
mixed_pieces = st.one_of(literal_texts, placeholders, other_forms)
mixed_templates = st.lists(mixed_pieces, max_size=6).map("".join)
template_texts = st.builds(
    lambda body, ending: body + ending,
    st.one_of(*[profile_only_templates] * 3, mixed_templates),
    st.sampled_from([""] * 8 + ["\n", "\n\n", "\r\n"]),
)

json_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    literal_texts,
)
json_values = st.recursive(
    st.one_of(json_scalars, st.none()),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(literal_texts, children, max_size=3),
    ),
    max_leaves=6,
)
profiles = st.dictionaries(names, json_values, max_size=8)
defaults_maps = st.dictionaries(names, json_scalars, max_size=4)

PATHS = [("what", "body"), ("what", "html_body"), ("what", "variants", "A", "html")]


def _outcome(render: Any) -> tuple[Any, ...]:
    try:
        rendered = render()
    except InvalidValue as error:
        return ("invalid", error.message, error.fields)
    return ("rendered", type(rendered), _without_addresses(rendered))


def _without_addresses(rendered: Any) -> Any:
    # `{{ profile.items }}` renders the method's repr, which contains the address of the
    # context dict, a new one for each render. `| upper` turns it to upper case.
    if isinstance(rendered, dict):
        return {key: _without_addresses(value) for key, value in rendered.items()}
    return re.sub(r" at 0x[0-9a-f]+", " at 0x?", rendered, flags=re.IGNORECASE)


def _jinja_outcome(
    text: str, profile: dict[str, Any], defaults: dict[str, Any], path: tuple[str, ...]
) -> tuple[Any, ...]:
    """Render `text` with the sandboxed Jinja environment alone, as before the fast path."""
    context = templates._context(profile, defaults)
    return _outcome(
        lambda: templates._checked_length(templates._render_jinja(text, context, path), path)
    )


@settings(max_examples=600, deadline=None)
@given(text=template_texts, profile=profiles, defaults=defaults_maps)
def test_rendering_matches_jinja(
    text: str, profile: dict[str, Any], defaults: dict[str, Any]
) -> None:
    kind = type(templates._text_template(text, False)).__name__
    event(f"template kind: {kind}")

    for path in PATHS:
        expected = _jinja_outcome(text, profile, defaults, path)
        event(f"outcome: {expected[0]}")

        single = _outcome(lambda: render_template(text, profile, defaults, path))
        assert single == expected

        plan = RenderPlan({path[-1]: text}, path[:-1])
        in_tree = _outcome(lambda: plan.render(profile, defaults))
        if expected[0] == "rendered":
            assert in_tree == ("rendered", dict, {path[-1]: expected[2]})
        else:
            assert in_tree == expected


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_filled_placeholders_match_jinja(data: st.DataObject) -> None:
    # Every name has a value, from the profile or (for a null trait) from the defaults,
    # so the templates that the fast path takes are filled in by it.
    text = data.draw(profile_only_templates, label="text")
    used = sorted(set(re.findall(r"profile\.(\w+)", text)))
    profile = data.draw(st.fixed_dictionaries({name: json_values for name in used}))
    defaults = data.draw(st.fixed_dictionaries({name: json_scalars for name in used}))
    event(f"template kind: {type(templates._text_template(text, False)).__name__}")

    for path in PATHS:
        expected = _jinja_outcome(text, profile, defaults, path)
        assert _outcome(lambda: render_template(text, profile, defaults, path)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Hi {{ profile.Name }}",
        "{{profile.Name}}",
        "<p>Hello {{  profile.Name   }}, see what is new.</p>",
        "{{ profile.Name }} and {{ profile.city }}}}",
    ],
)
def test_placeholder_only_templates_skip_jinja(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_jinja(*_: Any) -> None:
        raise AssertionError("Jinja compiled a template that the fast path covers")

    monkeypatch.setattr(templates, "_compiled", no_jinja)
    profile = {"Name": "Ada", "city": "Paris"}

    assert "Ada" in render_template(text, profile, {}, ("what", "html_body"))
    assert "Ada" in render_template(text, profile, {}, ("what", "body"))


@pytest.mark.parametrize(
    "text",
    [
        "Hi {{ profile.Name | upper }}",
        "Hi {{- profile.Name }}",
        "Hi {{ profile.Name }}\n",
        "Hi {{ profile.Name }}\r\nBye",
        "Hi {{ profile.Name }} {",
        "Hi {# greeting #}{{ profile.Name }}",
        "Hi {{ profile.keys }}",
        "Hi {{ profile.Nämé }}",
        "Hi {{\tprofile.Name }}",
    ],
)
def test_other_templates_use_jinja(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    original = templates._compiled

    def recording(template: str, html: bool = False) -> Any:
        compiled.append(template)
        return original(template, html)

    monkeypatch.setattr(templates, "_compiled", recording)
    render_template(text, {"Name": "Ada", "Nämé": "Ada"}, {}, ("what", "body"))

    assert compiled == [text]


def _variant(title: str, name: str = "A") -> MessageVariant:
    return MessageVariant.model_validate(
        {"name": name, "message": {"channel": "push", "title": title, "body": "Static body."}}
    )


def test_plan_not_shared_between_variants() -> None:
    first = _variant("First {{ profile.Name }}")
    second = _variant("Second {{ profile.Name }}")

    assert render_variant(first, {"Name": "Ada"}, {})["title"] == "First Ada"
    assert render_variant(second, {"Name": "Ada"}, {})["title"] == "Second Ada"
    assert render_variant(first, {"Name": "Bob"}, {})["title"] == "First Bob"


def test_plan_cached_per_variant() -> None:
    variant = _variant("Hi {{ profile.Name }}")

    render_variant(variant, {"Name": "Ada"}, {})

    assert rendering._plan_of(variant) is rendering._plan_of(variant)
    assert rendering._plans[id(variant)][0] is variant


def test_plan_not_reused_after_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    # With room for one plan, every variant evicts the one before and the freed variant's
    # id is often given to the next one.
    monkeypatch.setattr(rendering, "_plans", {})
    monkeypatch.setattr(rendering, "_MAX_CACHED_PLANS", 1)

    for i in range(50):
        variant = _variant(f"Offer {i} for {{{{ profile.Name }}}}")
        assert render_variant(variant, {"Name": "Ada"}, {})["title"] == f"Offer {i} for Ada"
        del variant
        gc.collect()


def test_plan_cache_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "_plans", {})
    monkeypatch.setattr(rendering, "_MAX_CACHED_PLANS", 2)
    variants = [_variant(f"Offer {i}") for i in range(5)]

    for variant in variants:
        render_variant(variant, {}, {})

    assert len(rendering._plans) == 2
    assert render_variant(variants[0], {}, {})["title"] == "Offer 0"


def test_plan_renders_fresh_copies() -> None:
    plan = RenderPlan({"sender": {"name": "Shop"}, "tags": ["a", "{{ profile.Name }}"]}, ("what",))
    first = plan.render({"Name": "Ada"}, {})
    first["sender"]["name"] = "changed"
    first["tags"].append("changed")

    second = plan.render({"Name": "Bob"}, {})

    assert second == {"sender": {"name": "Shop"}, "tags": ["a", "Bob"]}


def test_variant_render_error_keeps_path() -> None:
    variant = _variant("Hi {{ profile.Name }}", name="B")

    with pytest.raises(InvalidValue) as caught:
        render_variant(variant, {}, {})

    assert caught.value.fields[0].path == ("what", "variants", "B", "title")
    assert caught.value.message == (
        "cannot render 'Hi {{ profile.Name }}': 'dict object' has no attribute 'Name'; "
        "add the field to the profile or give it a default in `what.defaults`"
    )
