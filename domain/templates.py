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

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from domain.errors import InvalidValue

__all__ = ["check_template", "render_template", "render_tree"]

_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


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
def _compiled(text: str) -> Template:
    # Compiling costs far more than rendering, and a campaign renders the same texts for
    # every user it sends to.
    return _ENVIRONMENT.from_string(text)


def render_template(
    text: str,
    profile: Mapping[str, Any],
    defaults: Mapping[str, Any],
    path: tuple[str | int, ...] = (),
) -> str:
    """Render one template for a user.

    Raises:
        InvalidValue: a placeholder has no value and no default, or the sandbox blocked it.
    """
    context = {"profile": {**defaults, **profile}}
    try:
        return _compiled(text).render(context)
    except UndefinedError as error:
        raise InvalidValue(
            f"cannot render {text!r}: {error.message}; add the field to the profile or "
            "give it a default in `what.defaults`",
            path,
        ) from None
    except SecurityError as error:
        raise InvalidValue(f"cannot render {text!r}: {error}", path) from None


def render_tree(
    value: Any,
    profile: Mapping[str, Any],
    defaults: Mapping[str, Any],
    path: tuple[str | int, ...] = (),
) -> Any:
    """Render every string inside `value`, a JSON-like tree, and return the rendered copy."""
    if isinstance(value, str):
        return render_template(value, profile, defaults, path)
    if isinstance(value, Mapping):
        return {k: render_tree(v, profile, defaults, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, profile, defaults, (*path, i)) for i, v in enumerate(value)]
    return value
