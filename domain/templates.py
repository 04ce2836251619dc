"""Personalisation of message text with Jinja2 in a sandbox.

Message fields are Jinja2 templates rendered in `SandboxedEnvironment`, so a template
cannot reach Python internals. Placeholders read the user's profile (`{{ profile.Name }}`)
and fall back to the campaign's defaults for fields the profile lacks. A placeholder with
neither a value nor a default is an error rather than an empty string, so a preview shows
the gap before any user sees it.

A `RenderPlan` prepares a message tree once for rendering it for many users. Templates
made only of literal text and `{{ profile.NAME }}` placeholders are filled in directly
with the same result Jinja would give, and every other template is rendered by Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from domain.errors import InvalidValue

__all__ = [
    "MAX_RENDERED_CHARS",
    "RenderPlan",
    "check_template",
    "render_template",
    "render_tree",
]

# A text's location in a message, as pydantic's `loc`, which errors report.
_Path = tuple[str | int, ...]

# No message of any channel needs more; a template such as `{{ 'a' * 10**9 }}` is cut off
# before it can exhaust the process's memory.
MAX_RENDERED_CHARS = 100_000
_MAX_EXPONENT = 64

# Exceptions that a template which parses can still raise on some user's data.
_RENDER_ERRORS = (
    TemplateError,
    TypeError,
    ValueError,
    ArithmeticError,
    LookupError,
    RecursionError,
)


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with `*` and `**` bounded so a template cannot build huge values."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {_MAX_EXPONENT}")
        if operator == "*" and _repeated_length(left, right) > MAX_RENDERED_CHARS:
            raise SecurityError(f"the product is longer than {MAX_RENDERED_CHARS} characters")
        return super().call_binop(context, operator, left, right)


def _repeated_length(left: Any, right: Any) -> int:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
            return len(sequence) * count
    return 0


_ENVIRONMENT = _BoundedSandbox(undefined=StrictUndefined, autoescape=False)
# HTML fields escape profile values, so a user's own trait cannot inject markup.
_HTML_ENVIRONMENT = _BoundedSandbox(undefined=StrictUndefined, autoescape=True)


def check_template(text: str) -> str:
    """Return `text` after checking that it parses as a Jinja2 template.

    Raises:
        ValueError: the template has a syntax error; pydantic reports it with the path.
    """
    try:
        _ENVIRONMENT.parse(text)
    except TemplateSyntaxError as error:
        raise ValueError(f"invalid placeholder syntax at line {error.lineno}: {error.message}")
    return text


@lru_cache(maxsize=4096)
def _compiled(text: str, html: bool = False) -> Template:
    # Compiling costs far more than rendering, and a campaign renders the same texts for
    # every user it sends to.
    return (_HTML_ENVIRONMENT if html else _ENVIRONMENT).from_string(text)


def _is_html(path: _Path) -> bool:
    return bool(path) and path[-1] in ("html", "html_body")


def render_template(
    text: str,
    profile: Mapping[str, Any],
    defaults: Mapping[str, Any],
    path: _Path = (),
) -> str:
    """Render one template for a user.

    Raises:
        InvalidValue: a placeholder has no value and no default, the sandbox blocked it,
            the template failed on this data, or the result is too long.
    """
    return _text_template(text, _is_html(path)).render(_Scope(profile, defaults), path)


def render_tree(
    value: Any,
    profile: Mapping[str, Any],
    defaults: Mapping[str, Any],
    path: _Path = (),
) -> Any:
    """Render every string inside `value`, a JSON-like tree, and return the rendered copy."""
    return RenderPlan(value, path).render(profile, defaults)


def _context(profile: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    # A null trait counts as missing, so the default applies.
    return {"profile": {**defaults, **{k: v for k, v in profile.items() if v is not None}}}


_MISSING = object()


class _Scope:
    """One user's values, read by name without building Jinja's context unless needed."""

    __slots__ = ("_context", "_defaults", "_profile")

    def __init__(self, profile: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
        self._profile = profile
        self._defaults = defaults
        self._context: dict[str, Any] | None = None

    def value(self, name: str) -> Any:
        """Return `profile.NAME` as the Jinja context contains it, or `_MISSING`."""
        value = self._profile.get(name)
        if value is None:
            return self._defaults.get(name, _MISSING)
        return value

    def context(self) -> dict[str, Any]:
        if self._context is None:
            self._context = _context(self._profile, self._defaults)
        return self._context


# Text templates


def _is_static(text: str) -> bool:
    # Jinja would leave such a text as it is: nothing to substitute, no line ending to
    # normalise, no final newline to drop.
    return "{" not in text and "\r" not in text and not text.endswith("\n")


def _checked_length(rendered: str, path: _Path) -> str:
    if len(rendered) > MAX_RENDERED_CHARS:
        raise InvalidValue(
            f"the rendered text is {len(rendered)} characters, more than {MAX_RENDERED_CHARS}",
            path,
        )
    return rendered


def _render_jinja(text: str, context: dict[str, Any], path: _Path) -> str:
    try:
        rendered = _compiled(text, _is_html(path)).render(context)
    except UndefinedError as error:
        raise InvalidValue(
            f"cannot render {text!r}: {error.message}; add the field to the profile or "
            "give it a default in `what.defaults`",
            path,
        ) from None
    except SecurityError as error:
        raise InvalidValue(f"cannot render {text!r}: {error}", path) from None
    except _RENDER_ERRORS as error:
        raise InvalidValue(
            f"cannot render {text[:200]!r}: {type(error).__name__}: {str(error)[:200]}", path
        ) from None
    return rendered


class _StaticText:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def render(self, scope: _Scope, path: _Path) -> str:
        return _checked_length(self.text, path)


class _JinjaText:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def render(self, scope: _Scope, path: _Path) -> str:
        # Compiled on first use, so a syntax error is reported like any render error.
        return _checked_length(_render_jinja(self.text, scope.context(), path), path)


class _ProfileText:
    """A template of literal text and `{{ profile.NAME }}` placeholders, filled in directly.

    The code that Jinja 3.1 generates for such a placeholder outputs `str(value)`, or
    `markupsafe.escape(value)` with autoescape on, and this class does the same. Whenever
    a name has no value, or converting a value raises, Jinja renders the template, so
    errors read as before.
    """

    __slots__ = ("_convert", "_fallback", "_first", "_rest")

    def __init__(
        self, text: str, html: bool, literals: tuple[str, ...], names: tuple[str, ...]
    ) -> None:
        self._first = literals[0]
        self._rest = tuple(zip(names, literals[1:], strict=True))
        self._convert = escape if html else str
        self._fallback = _JinjaText(text)

    def render(self, scope: _Scope, path: _Path) -> str:
        filled = self._fill(scope)
        if filled is None:
            return self._fallback.render(scope, path)
        return _checked_length(filled, path)

    def _fill(self, scope: _Scope) -> str | None:
        parts = [self._first]
        for name, literal in self._rest:
            value = scope.value(name)
            if value is _MISSING:
                return None
            try:
                parts.append(self._convert(value))
            except _RENDER_ERRORS:
                return None
            parts.append(literal)
        return "".join(parts)


_Text = _StaticText | _JinjaText | _ProfileText

# `{{ profile.NAME }}` with optional spaces inside the braces. Jinja accepts more names
# (non-ASCII identifiers), and templates using them take the Jinja path.
_PROFILE_PLACEHOLDER = re.compile(r"\{\{ *profile\.([A-Za-z_][A-Za-z0-9_]*) *\}\}")


def _split_profile_template(text: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """Split `text` into its literal texts and placeholder names, if it has only those.

    Returns None for any other template, which Jinja then renders.
    """
    # Jinja turns `\r\n` and `\r` into `\n` and drops one final newline.
    if "\r" in text or text.endswith("\n"):
        return None
    pieces = _PROFILE_PLACEHOLDER.split(text)
    literals = tuple(pieces[0::2])
    names = tuple(pieces[1::2])
    # A `{` left in the literal text starts Jinja syntax that the pattern did not match
    # (`{%`, `{#`, `{{-`, a filter), or it may merge with the placeholder next to it.
    # Only Jinja can tell what such a template means.
    if any("{" in literal for literal in literals):
        return None
    # The sandbox looks a name up as an attribute first, so `profile.items` is the dict's
    # method and not the trait.
    if any(hasattr(dict, name) for name in names):
        return None
    return literals, names


@lru_cache(maxsize=4096)
def _text_template(text: str, html: bool) -> _Text:
    if _is_static(text):
        return _StaticText(text)
    split = _split_profile_template(text)
    if split is None:
        return _JinjaText(text)
    literals, names = split
    return _ProfileText(text, html, literals, names)


# Render plans


class _TextNode:
    __slots__ = ("_path", "_text")

    def __init__(self, text: _Text, path: _Path) -> None:
        self._text = text
        self._path = path

    def render(self, scope: _Scope) -> str:
        return self._text.render(scope, self._path)


class _DictNode:
    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[Any, Any, _Node | None]]) -> None:
        self._items = items

    def render(self, scope: _Scope) -> dict[Any, Any]:
        rendered = {}
        for key, constant, node in self._items:
            rendered[key] = constant if node is None else node.render(scope)
        return rendered


class _ListNode:
    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[Any, _Node | None]]) -> None:
        self._items = items

    def render(self, scope: _Scope) -> list[Any]:
        rendered = []
        for constant, node in self._items:
            rendered.append(constant if node is None else node.render(scope))
        return rendered


_Node = _TextNode | _DictNode | _ListNode


def _plan(value: Any, path: _Path) -> tuple[Any, _Node | None]:
    """Return `(value, None)` for a value every user gets as it is, else `(None, node)`."""
    if isinstance(value, str):
        text = _text_template(value, _is_html(path))
        if isinstance(text, _StaticText) and len(value) <= MAX_RENDERED_CHARS:
            return value, None
        return None, _TextNode(text, path)
    if isinstance(value, Mapping):
        items = [(key, *_plan(item, (*path, key))) for key, item in value.items()]
        return None, _DictNode(items)
    if isinstance(value, list):
        return None, _ListNode([_plan(item, (*path, i)) for i, item in enumerate(value)])
    return value, None


class RenderPlan:
    """A JSON-like tree prepared once for rendering it for many users.

    Each render returns new dicts and lists, so a caller may change what it gets. Values
    other than strings, dicts and lists are returned as they are, shared between renders.
    """

    __slots__ = ("_constant", "_node")

    def __init__(self, value: Any, path: _Path = ()) -> None:
        self._constant, self._node = _plan(value, path)

    def render(self, profile: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
        """Render every string of the tree for a user and return the rendered copy.

        Raises:
            InvalidValue: as `render_template`, for the first string that fails, in the
                order of the tree.
        """
        if self._node is None:
            return self._constant
        return self._node.render(_Scope(profile, defaults))
