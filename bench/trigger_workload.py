"""The 50 triggered campaigns of the engine benchmark and the events that drive them.

Every user's first event is an `identify` with the contact traits the channels need, so
that the campaigns can reach them. The track events that follow carry the properties the
campaigns filter on. The mix is fixed by a seed, so two runs see the same events.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.campaign import CampaignCreate
from streams.catalog import CampaignCatalog

CAMPAIGN_COUNT = 50
CHANNELS = ("push", "sms", "email", "in_app", "webhook")
# Every event of this name sends an in-app message at once, without a per-user cap, so the
# latency measurement gets a steady share of immediate sends.
PROBE_EVENT = "Coupon Claimed"

_CATEGORIES = ("electronics.smartphone", "appliances.kitchen", "apparel.shoes", "home.decor")
_PLATFORMS = ("ios", "android", "web")
_PAYMENTS = ("card", "card", "card", "paypal", "paypal", "voucher")
_APP_VERSIONS = ("5.0.9", "5.1.0", "5.1.3", "5.1.4", "5.2.0", "5.2.1")
_NO_RESULTS = 0.08
_FAILURES = ("card_declined", "insufficient_funds", "timeout")
# Relative frequency of each track event name. `_PROPERTIES` builds the properties per name.
_EVENT_WEIGHTS = {
    "Product Viewed": 40,
    "Product Added": 14,
    "Checkout Started": 7,
    "Order Completed": 5,
    "Payment Failed": 2,
    "App Opened": 13,
    "Search": 10,
    "Wishlist Added": 7,
    PROBE_EVENT: 1,
}
# Shares of users without a push token, and unsubscribed from email, so that some
# decisions end as "not reachable" or "unsubscribed" instead of a send.
_NO_PUSH_TOKEN = 0.1
_EMAIL_OPT_OUT = 0.05


def _eq(name: str, value: Any) -> dict[str, Any]:
    return {"property": name, "op": "eq", "value": value}


def _gt(name: str, value: float) -> dict[str, Any]:
    return {"property": name, "op": "gt", "value": value}


def _lt(name: str, value: float) -> dict[str, Any]:
    return {"property": name, "op": "lt", "value": value}


# (event, property filters) of the action triggers, taken in turn by the action campaigns.
# Each one matches about 0.1% to 1% of all events, so that about one event in five leads
# to a decision.
_ACTION_TRIGGERS: tuple[tuple[str, list[dict[str, Any]]], ...] = (
    ("Product Viewed", [_eq("category", "electronics.smartphone"), _gt("price", 490)]),
    ("Product Added", [_eq("category", "apparel.shoes"), _gt("price", 450)]),
    ("Checkout Started", [_gt("cart_value", 750)]),
    ("Order Completed", [_gt("revenue", 760)]),
    ("Payment Failed", [_eq("reason", "card_declined")]),
    ("App Opened", [_eq("platform", "ios"), _eq("version", "5.2.0")]),
    ("Search", [_eq("results", 0)]),
    ("Wishlist Added", [_gt("price", 490)]),
    ("Product Viewed", [_eq("category", "home.decor"), _lt("price", 10)]),
    ("Product Added", [_gt("price", 490)]),
    ("Order Completed", [_eq("payment", "voucher")]),
    ("Payment Failed", [_gt("amount", 500)]),
    ("App Opened", [_eq("platform", "android"), _eq("version", "5.2.0")]),
    (
        "Product Viewed",
        [
            {"property": "category", "op": "in", "value": ["appliances.kitchen", "apparel.shoes"]},
            _gt("price", 480),
        ],
    ),
)
# (did event, its filters, did-not event, window) of the inaction triggers.
_INACTION_TRIGGERS: tuple[tuple[str, list[dict[str, Any]], str, str], ...] = (
    ("Product Added", [_gt("price", 480)], "Order Completed", "PT30M"),
    ("Checkout Started", [_gt("cart_value", 700)], "Order Completed", "PT10M"),
    ("Product Viewed", [_gt("price", 495)], "Product Added", "PT20M"),
    ("App Opened", [_eq("platform", "web"), _eq("version", "5.2.0")], "Product Viewed", "PT15M"),
    ("Search", [_eq("results", 0)], "Product Viewed", "PT10M"),
    ("Wishlist Added", [_gt("price", 480)], "Product Added", "PT30M"),
)
_DELAYS = ("PT0S", "PT0S", "PT5M", "PT15M", "PT30M")
_PER_USER_LIMITS: tuple[dict[str, Any] | None, ...] = (
    None,
    {"max_sends": 1, "period": "rolling", "window": "PT24H"},
    {"max_sends": 2, "period": "calendar_day"},
    {"max_sends": 1, "period": "ever"},
)
_INACTION_EVERY = 5


@dataclass(frozen=True)
class CampaignMix:
    """Counts of the campaign kinds, printed with the results."""

    immediate: int
    delayed: int
    inaction: int
    capped: int
    channels: dict[str, int]

    def describe(self) -> str:
        channels = ", ".join(f"{name} {count}" for name, count in self.channels.items())
        return (
            f"{self.immediate + self.delayed + self.inaction} campaigns: {self.immediate} "
            f"immediate action, {self.delayed} delayed action, {self.inaction} inaction; "
            f"{self.capped} with a per-user limit; channels {channels}"
        )


def bench_catalog() -> tuple[CampaignCatalog, CampaignMix]:
    """Build the catalog of 50 running campaigns, all to every user, and count their kinds.

    Every fifth campaign is an inaction trigger. The others are action triggers on the
    events and filters of `_ACTION_TRIGGERS`, with delays and per-user limits taken in turn.
    The first campaign is the uncapped immediate one on `PROBE_EVENT`.
    """
    catalog = CampaignCatalog()
    kinds: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    creates = [_probe_campaign()] + [_campaign(index) for index in range(1, CAMPAIGN_COUNT)]
    for index, create in enumerate(creates):
        body = create.model_dump(mode="json")
        catalog.campaigns[f"bench-{index:02d}"] = {
            "state": "running",
            "timezone": "UTC",
            "name": body["name"],
            "live_definition": body,
        }
        when = body["when"]
        if when["type"] == "inaction":
            kinds["inaction"] += 1
        elif when["delay"] == "PT0S":
            kinds["immediate"] += 1
        else:
            kinds["delayed"] += 1
        kinds["capped"] += body["delivery"]["per_user"] is not None
        channels[body["channel"]] += 1
    mix = CampaignMix(
        immediate=kinds["immediate"],
        delayed=kinds["delayed"],
        inaction=kinds["inaction"],
        capped=kinds["capped"],
        channels=dict(sorted(channels.items())),
    )
    return catalog, mix


def _probe_campaign() -> CampaignCreate:
    return CampaignCreate.model_validate(
        {
            "name": "Coupon confirmation",
            "channel": "in_app",
            "what": _what("in_app"),
            "when": {"type": "event", "event": PROBE_EVENT},
        }
    )


def _campaign(index: int) -> CampaignCreate:
    # Separate strides keep kind, channel and limit from repeating together.
    channel = CHANNELS[(index + index // len(CHANNELS)) % len(CHANNELS)]
    per_user = _PER_USER_LIMITS[(index // 2) % len(_PER_USER_LIMITS)]
    if index % _INACTION_EVERY == 0:
        did, did_filters, did_not, within = _INACTION_TRIGGERS[
            (index // _INACTION_EVERY) % len(_INACTION_TRIGGERS)
        ]
        when: dict[str, Any] = {
            "type": "inaction",
            "did": {"event": did, "property_filters": did_filters},
            "did_not": {"event": did_not},
            "within": within,
        }
        name = f"{did} without {did_not} ({index})"
    else:
        event, filters = _ACTION_TRIGGERS[index % len(_ACTION_TRIGGERS)]
        delay = _DELAYS[(index // len(CHANNELS)) % len(_DELAYS)]
        when = {"type": "event", "event": event, "property_filters": filters, "delay": delay}
        name = f"{event} after {delay} ({index})"
    return CampaignCreate.model_validate(
        {
            "name": name,
            "channel": channel,
            "labels": ["Benchmark"],
            "what": _what(channel),
            "when": when,
            "delivery": {"per_user": per_user},
        }
    )


def _what(channel: str) -> dict[str, Any]:
    messages: dict[str, dict[str, Any]] = {
        "push": {"title": "Hi {{ profile.Name }}", "body": "Something new for you."},
        "sms": {"text": "{{ profile.Name }}, your offer is waiting in the app."},
        "email": {
            "subject": "For you, {{ profile.Name }}",
            "sender": {"name": "Herald Shop", "address": "hello@shop.example"},
            "html_body": "<p>Hello {{ profile.Name }}, see what is new.</p>",
            "text_body": "Hello {{ profile.Name }}, see what is new.",
        },
        "in_app": {"layout": "alert", "title": "Hi {{ profile.Name }}", "body": "Tap to see."},
        "webhook": {
            "url": "https://hooks.example.com/herald-bench",
            "payload": {"user": "{{ profile.Name }}", "kind": "benchmark"},
        },
    }
    message = {"channel": channel, **messages[channel]}
    return {"variants": [{"message": message}], "defaults": {"Name": "there"}}


# Events


class EventMix:
    """Source of Segment messages, in which each user's first message is an `identify`."""

    def __init__(self, users: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._users = users
        self._identified: set[int] = set()
        self._names = list(_EVENT_WEIGHTS)
        self._weights = list(_EVENT_WEIGHTS.values())

    def identifies(self, moment: datetime) -> list[dict[str, Any]]:
        """Return an `identify` of every user not identified yet, in user order."""
        return [
            self._identify(user, moment)
            for user in range(self._users)
            if user not in self._identified
        ]

    def next_message(self, moment: datetime) -> dict[str, Any]:
        """Return a track event of a random user, or its `identify` if the user has had none."""
        user = self._rng.randrange(self._users)
        if user not in self._identified:
            return self._identify(user, moment)
        name = self._rng.choices(self._names, self._weights)[0]
        return {
            "type": "track",
            "event": name,
            "userId": _user_id(user),
            "messageId": self._message_id(),
            "timestamp": _timestamp(moment),
            "properties": _PROPERTIES[name](self._rng),
            "context": {"library": {"name": "herald-bench", "version": "0.1.0"}},
        }

    def _identify(self, user: int, moment: datetime) -> dict[str, Any]:
        self._identified.add(user)
        rng = self._rng
        traits: dict[str, Any] = {
            "Name": f"User {user}",
            "email": f"user{user}@example.com",
            "phone": f"+1555{user:07d}",
            "user_lifecycle": rng.choice(("new", "active", "lapsed")),
        }
        if rng.random() >= _NO_PUSH_TOKEN:
            traits["push_token"] = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        if rng.random() < _EMAIL_OPT_OUT:
            traits["MSG-email"] = False
        return {
            "type": "identify",
            "userId": _user_id(user),
            "messageId": self._message_id(),
            "timestamp": _timestamp(moment),
            "traits": traits,
        }

    def _message_id(self) -> str:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4).hex


def spread_messages(
    users: int, events: int, seed: int, span: timedelta, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Build `events` messages whose timestamps rise evenly over `span`, ending at `end`.

    The first `users` messages are the identifies. A span of event time longer than the
    campaigns' delays and windows lets delayed sends and inaction windows come due during
    the run, as the watermark moves.
    """
    mix = EventMix(users, seed)
    end = end or datetime.now(UTC)
    start = end - span
    step = span / max(events, 1)
    messages = mix.identifies(start)[:events]
    for index in range(len(messages), events):
        messages.append(mix.next_message(start + step * index))
    return messages


def message_counts(messages: Sequence[dict[str, Any]]) -> Counter[str]:
    """Count messages by event name, with `identify` for the identifies."""
    return Counter(message.get("event") or message["type"] for message in messages)


def _user_id(user: int) -> str:
    return f"user-{user:06d}"


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _product(rng: random.Random) -> dict[str, Any]:
    return {
        "product_id": f"p-{rng.randrange(50_000):05d}",
        "category": rng.choice(_CATEGORIES),
        "price": round(rng.uniform(1, 500), 2),
        "currency": "USD",
    }


def _checkout(rng: random.Random) -> dict[str, Any]:
    return {"cart_value": round(rng.uniform(10, 800), 2), "items": rng.randint(1, 6)}


def _order(rng: random.Random) -> dict[str, Any]:
    return {
        "order_id": f"o-{rng.getrandbits(40):010x}",
        "revenue": round(rng.uniform(10, 800), 2),
        "currency": "USD",
        "payment": rng.choice(_PAYMENTS),
    }


def _payment_failure(rng: random.Random) -> dict[str, Any]:
    return {"amount": round(rng.uniform(10, 800), 2), "reason": rng.choice(_FAILURES)}


def _app_open(rng: random.Random) -> dict[str, Any]:
    return {"platform": rng.choice(_PLATFORMS), "version": rng.choice(_APP_VERSIONS)}


def _search(rng: random.Random) -> dict[str, Any]:
    results = 0 if rng.random() < _NO_RESULTS else rng.randint(1, 60)
    return {"query": f"q{rng.randrange(1000)}", "results": results}


def _coupon(rng: random.Random) -> dict[str, Any]:
    return {"coupon": f"SAVE{rng.choice((5, 10, 15))}"}


_PROPERTIES: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "Product Viewed": _product,
    "Product Added": _product,
    "Checkout Started": _checkout,
    "Order Completed": _order,
    "Payment Failed": _payment_failure,
    "App Opened": _app_open,
    "Search": _search,
    "Wishlist Added": _product,
    PROBE_EVENT: _coupon,
}
