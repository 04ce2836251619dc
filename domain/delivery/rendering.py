"""Rendering of a variant's message for one user, the last step before sending."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from jinja2 import TemplateError

from domain.errors import InvalidValue
from domain.templates import render_tree
from schemas.campaign_message import MessageVariant

__all__ = ["MessageRenderer", "render_variant"]


class MessageRenderer(Protocol):
    """Renders a variant's message for a user; raises InvalidValue when it cannot."""

    def __call__(
        self, variant: MessageVariant, traits: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> dict[str, Any]: ...


def render_variant(
    variant: MessageVariant, traits: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Render every text field of the variant's message and return it as a JSON object.

    Raises:
        InvalidValue: a placeholder has no value, or the template fails on this user's
            data (`{{ profile.age + 1 }}` with a text age, a division by zero).
    """
    message = variant.message.model_dump(mode="json", exclude_none=True)
    path = ("what", "variants", variant.name)
    try:
        rendered: dict[str, Any] = render_tree(message, traits, defaults, path)
    except (TemplateError, TypeError, ValueError, ArithmeticError) as error:
        raise InvalidValue(f"cannot render variant {variant.name!r}: {error}", path) from None
    return rendered
