"""Personalisation of message text with Jinja2 in a sandbox.

Message fields are Jinja2 templates rendered in `SandboxedEnvironment`, so a template
cannot reach Python internals. Placeholders read the user's profile (`{{ profile.Name }}`)
and fall back to the campaign's defaults for fields the profile lacks. A placeholder with
neither a value nor a default is an error rather than an empty string, so a preview shows
the gap before any user sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from domain.errors import InvalidValue

__all__ = ["MAX_RENDERED_CHARS", "check_template", "render_template", "render_tree"]

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


def _is_html(path: tuple[str | int, ...]) -> bool:
    return bool(path) and path[-1] in ("html", "html_body")


def render_template(
    text: str,
    profile: Mapping[str, Any],
    defaults: Mapping[str, Any],
    path: tuple[str | int, ...] = (),
) -> str:
    """Render one template for a user.

    Raises:
        InvalidValue: a placeholder has no value and no default, the sandbox blocked it,
            the template failed on this data, or the result is too long.
    """
    return _render(text, _context(profile, defaults), path)


def _context(profile: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    # A null trait counts as missing, so the default applies.
    return {"profile": {**defaults, **{k: v for k, v in profile.items() if v is not None}}}


def _is_static(text: str) -> bool:
    # Jinja would leave such a text as it is: nothing to substitute, no line ending to
    # normalise, no final newline to drop.
    return "{" not in text and "\r" not in text and not text.endswith("\n")


def _render(text: str, context: dict[str, Any], path: tuple[str | int, ...]) -> str:
    if _is_static(text):
        rendered = text
    else:
        rendered = _render_jinja(text, context, path)
    if len(rendered) > MAX_RENDERED_CHARS:
        raise InvalidValue(
            f"the rendered text is {len(rendered)} characters, more than {MAX_RENDERED_CHARS}",
            path,
        )
    return rendered


def _render_jinja(text: str, context: dict[str, Any], path: tuple[str | int, ...]) -> str:
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


def render_tree(
    value: Any,
    profile: Mapping[str, Any],
    defaults: Mapping[str, Any],
    path: tuple[str | int, ...] = (),
) -> Any:
    """Render every string inside `value`, a JSON-like tree, and return the rendered copy."""
    return _render_tree(value, _context(profile, defaults), path)


def _render_tree(value: Any, context: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    if isinstance(value, str):
        return _render(value, context, path)
    if isinstance(value, Mapping):
        return {k: _render_tree(v, context, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, context, (*path, i)) for i, v in enumerate(value)]
    return value
