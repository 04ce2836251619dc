"""Subscription and reachability of a user on a channel, read from profile traits.

A user is unsubscribed from a channel when its flag (`MSG-email`, `MSG-push`, `MSG-sms`)
is false, or the text "false" in any case; a missing flag means subscribed. A user is
reachable when the profile has a non-empty text in one of the channel's contact traits
(for web push, the subscription object):

| channel | contact traits |
| --- | --- |
| email | `email` or `Email` |
| sms | `phone` or `Phone` |
| push | `push_token` |
| web_push | `web_push_subscription` |
| facebook_audience, google_ads_audience | `email`, `Email`, `phone` or `Phone` (for matching) |
| in_app, app_inbox, native_display, web_popup, web_exit_intent, webhook | none |

The in-app and web channels show the message the next time the user opens the app or
the site, and a webhook posts the profile to the campaign's endpoint, so they need no
contact trait.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CONTACT_TRAITS", "SUBSCRIPTION_TRAITS", "is_reachable", "is_unsubscribed"]

SUBSCRIPTION_TRAITS: dict[str, str] = {"email": "MSG-email", "push": "MSG-push", "sms": "MSG-sms"}

_EMAIL = ("email", "Email")
_PHONE = ("phone", "Phone")
CONTACT_TRAITS: dict[str, tuple[str, ...]] = {
    "email": _EMAIL,
    "sms": _PHONE,
    "push": ("push_token",),
    "web_push": ("web_push_subscription",),
    "facebook_audience": _EMAIL + _PHONE,
    "google_ads_audience": _EMAIL + _PHONE,
}


def is_unsubscribed(traits: Mapping[str, Any], channel: str) -> bool:
    """Return whether the user's flag for `channel` is false.

    Uploads in CleverTap's format may carry the flag as the string "false", so strings
    are compared without case.
    """
    flag_name = SUBSCRIPTION_TRAITS.get(channel)
    if flag_name is None:
        return False
    flag = traits.get(flag_name)
    if isinstance(flag, str):
        # Spaces only, as SQL's trim does, so segments and delivery agree.
        return flag.strip(" ").lower() == "false"
    return flag is False


def is_reachable(traits: Mapping[str, Any], channel: str) -> bool:
    """Return whether the profile has a contact trait the channel can send to."""
    names = CONTACT_TRAITS.get(channel)
    if names is None:
        return True
    return any(_present(traits.get(name), name) for name in names)


def _present(value: Any, name: str) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    # A browser's push subscription is a JSON object; every other contact is text.
    return name == "web_push_subscription" and isinstance(value, dict) and bool(value)
