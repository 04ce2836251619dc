"""Rendering of a variant's message for one user, the last step before sending."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from jinja2 import TemplateError

from domain.errors import InvalidValue
from domain.templates import RenderPlan
from schemas.campaign_message import MessageVariant

__all__ = ["MAX_MESSAGE_BYTES", "MessageRenderer", "render_variant"]

# Each field is bounded by MAX_RENDERED_CHARS, but a message of many fields could still
# outgrow a Kafka record (1 MiB by default), and one record the broker rejects would stop
# every send of the engine's transaction.
MAX_MESSAGE_BYTES = 256 * 1024

# The engine keeps each live campaign's variants for as long as the catalog is unchanged,
# so a plan is prepared once per variant and used for every send. Each entry keeps its
# variant alive, so no other object can take the id that keys it. The bound caps how many
# replaced variants the cache keeps alive.
# NOTE: a variant is frozen, but the dicts inside its message (a webhook's `payload`) are
# not. Renders keep using the plan, so they miss a change made to those dicts in place.
_MAX_CACHED_PLANS = 4096
_plans: dict[int, tuple[MessageVariant, RenderPlan]] = {}
_plans_lock = threading.Lock()


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
    plan = _plan_of(variant)
    path = ("what", "variants", variant.name)
    try:
        rendered: dict[str, Any] = plan.render(traits, defaults)
    except (TemplateError, TypeError, ValueError, ArithmeticError) as error:
        raise InvalidValue(f"cannot render variant {variant.name!r}: {error}", path) from None
    size = len(orjson.dumps(rendered))
    if size > MAX_MESSAGE_BYTES:
        raise InvalidValue(
            f"the rendered message of variant {variant.name!r} is {size} bytes, more than "
            f"{MAX_MESSAGE_BYTES}; shorten its texts or the profile values they insert",
            path,
        )
    return rendered


def _plan_of(variant: MessageVariant) -> RenderPlan:
    entry = _plans.get(id(variant))
    if entry is not None and entry[0] is variant:
        return entry[1]
    message = variant.message.model_dump(mode="json", exclude_none=True)
    plan = RenderPlan(message, ("what", "variants", variant.name))
    with _plans_lock:
        while len(_plans) >= _MAX_CACHED_PLANS:
            # Dicts keep insertion order, so this drops the oldest plan.
            del _plans[next(iter(_plans))]
        _plans[id(variant)] = (variant, plan)
    return plan
