"""The partition engine driven directly: event-time rules, ledger, restore and controls."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from domain.delivery import AccountRules, in_account_control_group, in_control_group
from domain.engine import (
    MAX_WAITING,
    NOT_SENT_EVENT,
    SENT_EVENT,
    CampaignSet,
    EngineRules,
    PartitionEngine,
    compile_campaigns,
    fit_state,
    send_id_of,
)
from schemas.campaign import CampaignCreate
from schemas.delivery import AccountDeliverySettings, ChannelFrequencyCap, GlobalFrequencyCaps
from schemas.envelope import format_timestamp
from tests.domain.engine.reference import (
    ECOM_CSV,
    catalog_entry,
    ecom_envelopes_by_partition,
    example_catalog,
)
from tests.e2e.reference_sends import predicted_sends

NOW = datetime(2026, 12, 4, tzinfo=UTC)
T0 = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
NAMES = {
    "abandoned_cart": "Abandoned cart",
    "payment_problem": "Payment problem",
    "welcome": "Welcome",
}


def _event(
    user: str,
    name: str,
    at: datetime,
    message_id: str | None = None,
    received: datetime | None = None,
    **properties: Any,
) -> dict[str, Any]:
    return {
        "message_id": message_id or f"{user}-{name}-{at.isoformat()}",
        "type": "track",
        "event": name,
        "user_id": user,
        "anonymous_id": None,
        "timestamp": format_timestamp(at),
        "received_at": format_timestamp(received or at),
        "properties": properties,
        "traits": {},
    }


def _identify(user: str, at: datetime, **traits: Any) -> dict[str, Any]:
    return {
        **_event(user, "identify", at, f"{user}-identify-{at.isoformat()}"),
        "type": "identify",
        "event": None,
        "traits": {
            "email": f"{user}@example.com",
            "phone": "+15550000001",
            "push_token": f"push-{user}",
            **traits,
        },
    }


def _campaigns(**bodies: dict[str, Any]) -> CampaignSet:
    return compile_campaigns(
        {cid: catalog_entry(CampaignCreate.model_validate(body)) for cid, body in bodies.items()},
        {},
    )


def _campaign(
    when: dict[str, Any],
    delivery: dict[str, Any] | None = None,
    who: dict[str, Any] | None = None,
    channel: str = "push",
) -> dict[str, Any]:
    message: dict[str, Any] = {"channel": "push", "title": "Hi", "body": "Hello"}
    if channel == "sms":
        message = {"channel": "sms", "text": "Hello"}
    return {
        "name": "Test",
        "channel": channel,
        "labels": ["Tests"],
        "who": who or {"type": "all_users"},
        "what": {"variants": [{"name": "A", "weight": 100, "message": message}]},
        "when": {**when, "timezone": "account"},
        "delivery": delivery or {},
    }


PAYMENT = _campaign({"type": "event", "event": "payment_error"})
CART = _campaign(
    {
        "type": "inaction",
        "did": {"event": "add_to_cart"},
        "did_not": {"event": "purchase"},
        "within": "PT1H",
    }
)


# Quiet from 22:00 to 08:00 every day, in the user's zone; messages wait for the end.
NIGHT_DEFERRED_PAYMENT = _campaign(
    {"type": "event", "event": "payment_error"},
    {
        "quiet_hours": {
            "windows": [
                {
                    "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "22:00",
                    "end": "08:00",
                }
            ],
            "action": "defer",
        }
    },
)

# At most one message per 5-minute slot, across all partitions.
THROTTLED_PAYMENT = _campaign(
    {"type": "event", "event": "payment_error"}, {"throttle": {"max_per_5_minutes": 1}}
)


def _sent(effects_list: list[Any]) -> list[tuple[str, str, str]]:
    return [(s["campaign_id"], s["user_id"], s["send_at"]) for e in effects_list for s in e.sends]


# The reference dataset -----------------------------------------------------------------


def test_example_campaigns_send_what_duckdb_predicts() -> None:
    campaigns = compile_campaigns(example_catalog(), {})
    got: dict[str, list[tuple[str, datetime]]] = {name: [] for name in NAMES.values()}
    for partition, envelopes in ecom_envelopes_by_partition().items():
        engine = PartitionEngine(partition, EngineRules())
        for effects in (engine.process(envelopes, campaigns, NOW), engine.flush(campaigns, NOW)):
            for send in effects.sends:
                got[NAMES[send["campaign_id"]]].append(
                    (send["user_id"], datetime.fromisoformat(send["send_at"]))
                )
    expected = predicted_sends(ECOM_CSV)
    for name, sends in expected.items():
        assert sorted(got[name]) == sends, name


@pytest.mark.parametrize("cut", [1, 2_000, 4_321, 7_000])
def test_restored_state_continues_as_if_never_stopped(cut: int) -> None:
    campaigns = compile_campaigns(example_catalog(), {})
    envelopes = ecom_envelopes_by_partition()[0]

    whole = PartitionEngine(0, EngineRules())
    expected = _sent([whole.process(envelopes, campaigns, NOW), whole.flush(campaigns, NOW)])

    first = PartitionEngine(0, EngineRules())
    before = first.process(envelopes[:cut], campaigns, NOW)
    users = {key: orjson.loads(orjson.dumps(state)) for key, state in first.users.items()}
    meta = orjson.loads(orjson.dumps(first.meta()))
    second = PartitionEngine(0, EngineRules(), users, meta)
    # The events just before the cut come again, as after a client retry.
    after = second.process(envelopes[max(0, cut - 50) :], campaigns, NOW)
    assert _sent([before, after, second.flush(campaigns, NOW)]) == expected


# Event time ----------------------------------------------------------------------------


def test_copy_of_a_triggering_event_sends_once() -> None:
    campaigns = _campaigns(payment=PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    error = _event("u1", "payment_error", T0, "m1")
    effects = engine.process([_identify("u1", T0), error, error], campaigns, NOW)
    assert [s["send_id"] for s in effects.sends] == [send_id_of("payment", "m1", "u1")]


def test_clock_ahead_event_ignored() -> None:
    campaigns = _campaigns(payment=PAYMENT, cart=CART)
    engine = PartitionEngine(0, EngineRules())
    engine.process([_identify("u1", T0), _event("u1", "add_to_cart", T0)], campaigns, NOW)
    ahead = _event("u2", "payment_error", T0 + timedelta(hours=5), received=T0)
    effects = engine.process([_identify("u2", T0), ahead], campaigns, NOW)
    assert effects.sends == []
    assert engine.watermark_us == engine.meta()["watermark_us"]
    assert datetime.fromtimestamp(engine.watermark_us / 1e6, UTC) == T0


def test_first_event_far_ahead_ignored() -> None:
    campaigns = _campaigns(payment=PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    far = datetime(2099, 1, 1, tzinfo=UTC)
    effects = engine.process([_event("u1", "payment_error", far, received=far)], campaigns, NOW)
    assert engine.watermark_us is None
    assert effects.untimely == 1
    assert effects.sends == []


def test_received_at_ahead_of_clock_ignored() -> None:
    campaigns = _campaigns(payment=PAYMENT, cart=CART)
    engine = PartitionEngine(0, EngineRules())
    engine.process([_identify("u1", T0), _event("u1", "add_to_cart", T0)], campaigns, NOW)
    # A producer other than the API may write any `received_at`.
    far = datetime(2099, 1, 1, tzinfo=UTC)
    effects = engine.process([_event("u2", "home", far, received=far)], campaigns, NOW)
    assert effects.sends == []
    assert datetime.fromtimestamp(engine.watermark_us / 1e6, UTC) == T0


def test_late_event_does_not_trigger_but_cancels() -> None:
    campaigns = _campaigns(payment=PAYMENT, cart=CART)
    engine = PartitionEngine(0, EngineRules())
    engine.process(
        [_identify("u1", T0), _event("u1", "add_to_cart", T0 + timedelta(minutes=30))],
        campaigns,
        NOW,
    )
    engine.process([_event("u2", "home", T0 + timedelta(hours=3))], campaigns, NOW)
    late = [
        _event("u1", "payment_error", T0 - timedelta(seconds=1)),
        _event("u1", "purchase", T0 + timedelta(minutes=31)),
    ]
    effects = engine.process(late, campaigns, NOW)
    assert effects.sends == []
    assert _sent([engine.flush(campaigns, NOW)]) == []


@pytest.mark.parametrize("restored", [False, True])
def test_window_closes_after_its_end(restored: bool) -> None:
    campaigns = _campaigns(cart=CART)
    engine = PartitionEngine(0, EngineRules())
    engine.process([_identify("u1", T0), _event("u1", "add_to_cart", T0)], campaigns, NOW)
    if restored:
        engine = PartitionEngine(0, EngineRules(), engine.users, engine.meta())
    end_us = engine.watermark_us + 3600 * 1_000_000
    assert engine.advance(end_us, campaigns, NOW).sends == []
    [send] = engine.advance(end_us + 1, campaigns, NOW).sends
    assert send["send_at"] == format_timestamp(T0 + timedelta(hours=1))


def test_due_count_of_open_windows() -> None:
    campaigns = _campaigns(cart=CART)
    engine = PartitionEngine(0, EngineRules())
    # Ten users whose cart windows end one minute apart, the first at T0 + 1 hour.
    events = []
    for n in range(10):
        events += [
            _identify(f"u{n}", T0),
            _event(f"u{n}", "add_to_cart", T0 + timedelta(minutes=n)),
        ]
    engine.process(events, campaigns, NOW)
    # A window is due once the watermark is past its end.
    first_due_us = _us(T0 + timedelta(hours=1)) + 1

    assert engine.scheduled == 10
    assert engine.due_count(first_due_us - 1, 100) == 0
    assert engine.due_count(first_due_us, 100) == 1
    assert engine.due_count(first_due_us + 4 * 60 * 1_000_000, 100) == 5
    assert engine.due_count(first_due_us + 3600 * 1_000_000, 100) == 10
    assert engine.due_count(first_due_us + 3600 * 1_000_000, 3) == 3


def test_stopped_campaign_reports_its_open_windows_not_sent() -> None:
    engine = PartitionEngine(0, EngineRules())
    engine.process(
        [_identify("u1", T0), _event("u1", "add_to_cart", T0)], _campaigns(cart=CART), NOW
    )
    stopped = catalog_entry(CampaignCreate.model_validate(CART), state="stopped")
    effects = engine.flush(compile_campaigns({"cart": stopped}, {}), NOW)
    assert effects.sends == []
    [event] = effects.events
    assert (event["event"], event["properties"]["reason"]) == (NOT_SENT_EVENT, "campaign_stopped")
    assert engine.flush(CampaignSet(), NOW).events == []


# Delivery controls through the engine --------------------------------------------------


def test_quiet_hours_defer_in_user_zone() -> None:
    campaigns = _campaigns(payment=NIGHT_DEFERRED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    # 2024-03-10 03:30 UTC is 23:30 in New York, the night clocks move forward.
    at = datetime(2024, 3, 10, 3, 30, tzinfo=UTC)
    effects = engine.process(
        [_identify("u1", at, Tz="America/New_York"), _event("u1", "payment_error", at)],
        campaigns,
        NOW,
    )
    assert effects.sends == []
    # 08:00 EDT on 2024-03-10 is 12:00 UTC.
    opens = datetime(2024, 3, 10, 12, tzinfo=UTC)
    assert engine.advance(_us(opens) - 1, campaigns, NOW).sends == []
    [send] = engine.advance(_us(opens), campaigns, NOW).sends
    assert send["send_at"] == format_timestamp(opens)


def test_control_group_is_recorded_not_sent() -> None:
    campaigns = _campaigns(
        payment=_campaign(
            {"type": "event", "event": "payment_error"}, {"control_group_percent": 20}
        )
    )
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n}" for n in range(500)]
    envelopes = [
        e for user in users for e in (_identify(user, T0), _event(user, "payment_error", T0))
    ]
    effects = engine.process(envelopes, campaigns, NOW)
    held = [user for user in users if in_control_group(20, "payment", user)]
    assert len(effects.sends) == 500 - len(held)
    not_sent = [e for e in effects.events if e["event"] == NOT_SENT_EVENT]
    assert sorted(e["user_id"] for e in not_sent) == sorted(held)
    assert {e["properties"]["reason"] for e in not_sent} == {"control_group"}
    assert effects.reasons == Counter({("payment", "control_group"): len(held)})


def _with_account_delivery(
    account_delivery: dict[str, Any] | None, **bodies: dict[str, Any]
) -> CampaignSet:
    entries = {}
    for campaign_id, body in bodies.items():
        entry = catalog_entry(CampaignCreate.model_validate(body))
        entries[campaign_id] = {**entry, "account_delivery": account_delivery}
    return compile_campaigns(entries, {})


def test_account_caps_published_with_campaigns_apply() -> None:
    one_push_a_day = {"frequency_caps": {"channels": {"push": {"max_messages": 1, "days": 1}}}}
    campaigns = _with_account_delivery(
        one_push_a_day,
        payment=_campaign({"type": "event", "event": "payment_error"}),
        cart=_campaign({"type": "event", "event": "add_to_cart"}),
    )
    # The engine's own settings cap nothing, and the account's settings replace them.
    engine = PartitionEngine(0, EngineRules())
    effects = engine.process(
        [
            _identify("u1", T0),
            _event("u1", "payment_error", T0),
            _event("u1", "add_to_cart", T0 + timedelta(minutes=1)),
        ],
        campaigns,
        NOW,
    )
    assert [send["campaign_id"] for send in effects.sends] == ["payment"]
    assert effects.reasons == Counter({("cart", "global_cap"): 1})


def test_late_event_cannot_pass_a_daily_cap() -> None:
    one_push_a_day = {"frequency_caps": {"channels": {"push": {"max_messages": 1}}}}
    campaigns = _with_account_delivery(
        one_push_a_day, payment=_campaign({"type": "event", "event": "payment_error"})
    )
    engine = PartitionEngine(0, EngineRules())
    sent = engine.process(
        [_identify("u1", T0), _event("u1", "payment_error", T0 + timedelta(minutes=30))],
        campaigns,
        NOW,
    )

    late = engine.process([_event("u1", "payment_error", T0)], campaigns, NOW)

    assert len(sent.sends) == 1
    assert late.sends == []
    assert late.reasons == Counter({("payment", "global_cap"): 1})


def test_engine_caps_apply_without_account_settings() -> None:
    engine_caps = GlobalFrequencyCaps(channels={"push": ChannelFrequencyCap(max_messages=1)})
    rules = EngineRules(
        account=AccountRules("UTC", AccountDeliverySettings(frequency_caps=engine_caps))
    )
    envelopes = [
        _identify("u1", T0),
        _event("u1", "payment_error", T0),
        _event("u1", "add_to_cart", T0 + timedelta(minutes=1)),
    ]
    bodies = {
        "payment": _campaign({"type": "event", "event": "payment_error"}),
        "cart": _campaign({"type": "event", "event": "add_to_cart"}),
    }

    defaults = PartitionEngine(0, rules).process(
        envelopes, _with_account_delivery(None, **bodies), NOW
    )
    uncapped = PartitionEngine(0, rules).process(
        envelopes, _with_account_delivery({}, **bodies), NOW
    )

    assert len(defaults.sends) == 1
    assert defaults.reasons == Counter({("cart", "global_cap"): 1})
    # An account that saved settings without caps is not capped by the engine's.
    assert len(uncapped.sends) == 2


def test_account_control_group_published_with_campaigns() -> None:
    campaigns = _with_account_delivery(
        {"control_group_percent": 5},
        payment=_campaign({"type": "event", "event": "payment_error"}),
    )
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n}" for n in range(1000)]
    envelopes = [
        e for user in users for e in (_identify(user, T0), _event(user, "payment_error", T0))
    ]
    effects = engine.process(envelopes, campaigns, NOW)
    in_group = [user for user in users if in_account_control_group(5, user)]
    assert in_group
    assert len(effects.sends) == 1000 - len(in_group)
    assert effects.reasons == Counter({("payment", "account_control_group"): len(in_group)})


def test_account_control_groups_differ_by_account() -> None:
    entries = {}
    for account in ("shop", "bank"):
        body = _campaign({"type": "event", "event": "payment_error"})
        entry = catalog_entry(CampaignCreate.model_validate(body))
        entry["account_id"] = account
        entry["account_delivery"] = {"control_group_percent": 5}
        entries[f"{account}-payment"] = entry
    campaigns = compile_campaigns(entries, {})
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n}" for n in range(1000)]
    envelopes = [
        e for user in users for e in (_identify(user, T0), _event(user, "payment_error", T0))
    ]
    effects = engine.process(envelopes, campaigns, NOW)

    held_out = {
        account: {
            e["user_id"]
            for e in effects.events
            if e["campaign_id"] == f"{account}-payment"
            and e["properties"].get("reason") == "account_control_group"
        }
        for account in ("shop", "bank")
    }
    for account, users_held in held_out.items():
        assert users_held == {u for u in users if in_account_control_group(5, u, account)}
        assert 20 <= len(users_held) <= 80
    assert held_out["shop"] != held_out["bank"]


def test_label_audiences_count_own_account_only() -> None:
    sent_sale = {
        "type": "inline_segment",
        "definition": {
            "type": "message",
            "action": "sent",
            "label": "Sale",
            "window": {"type": "last_days", "days": 7},
        },
    }
    bodies = {
        "sale": ("acc-a", _campaign({"type": "event", "event": "purchase"})),
        "a_follow": ("acc-a", _campaign({"type": "event", "event": "app_open"}, who=sent_sale)),
        "b_follow": ("acc-b", _campaign({"type": "event", "event": "app_open"}, who=sent_sale)),
    }
    entries = {}
    for campaign_id, (account_id, body) in bodies.items():
        entry = catalog_entry(CampaignCreate.model_validate({**body, "labels": ["Sale"]}))
        entries[campaign_id] = {**entry, "account_id": account_id}
    campaigns = compile_campaigns(entries, {})
    engine = PartitionEngine(0, EngineRules())

    effects = engine.process(
        [
            _identify("u1", T0),
            _event("u1", "purchase", T0),
            _event("u1", "app_open", T0 + timedelta(minutes=1)),
        ],
        campaigns,
        NOW,
    )

    assert [send["campaign_id"] for send in effects.sends] == ["sale", "a_follow"]
    [sale, _follow] = [e for e in effects.events if e["event"] == SENT_EVENT]
    assert sale["properties"]["account_id"] == "acc-a"


def test_unreachable_user_is_counted_not_sent() -> None:
    campaigns = _campaigns(
        payment=_campaign({"type": "event", "event": "payment_error"}, channel="sms")
    )
    engine = PartitionEngine(0, EngineRules())
    effects = engine.process([_event("u1", "payment_error", T0)], campaigns, NOW)
    assert effects.sends == []
    assert effects.reasons == Counter({("payment", "not_reachable"): 1})


def test_segment_audience_limits_who_is_sent() -> None:
    buyers = {
        "type": "inline_segment",
        "definition": {
            "type": "event",
            "event": "purchase",
            "window": {"type": "last_days", "days": 30},
        },
    }
    campaigns = _campaigns(
        payment=_campaign({"type": "event", "event": "payment_error"}, who=buyers)
    )
    engine = PartitionEngine(0, EngineRules())
    envelopes = [
        _identify("buyer", T0),
        _event("buyer", "purchase", T0),
        _identify("browser", T0),
        _event("browser", "home", T0),
        _event("buyer", "payment_error", T0 + timedelta(minutes=1)),
        _event("browser", "payment_error", T0 + timedelta(minutes=1)),
    ]
    effects = engine.process(envelopes, campaigns, NOW)
    assert [s["user_id"] for s in effects.sends] == ["buyer"]


def test_sent_event_carries_campaign_variant_channel_and_labels() -> None:
    engine = PartitionEngine(0, EngineRules())
    effects = engine.process(
        [_identify("u1", T0), _event("u1", "payment_error", T0, "m1")],
        _campaigns(payment=PAYMENT),
        NOW,
    )
    [event] = effects.events
    assert event["event"] == SENT_EVENT
    assert event["message_id"] == effects.sends[0]["send_id"]
    assert (event["campaign_id"], event["variant"], event["channel"], event["labels"]) == (
        "payment",
        "A",
        "push",
        ["Tests"],
    )
    assert event["timestamp"] == format_timestamp(T0)


def test_own_notifications_counted_when_an_audience_reads_them() -> None:
    was_sent = {
        "type": "inline_segment",
        "definition": {
            "type": "message",
            "action": "sent",
            "campaign_id": "payment",
            "window": {"type": "last_days", "days": 30},
        },
    }
    campaigns = _payment_and_follow_up(was_sent)
    engine = PartitionEngine(0, EngineRules())
    first = engine.process(
        [_identify("u1", T0), _event("u1", "payment_error", T0, "m1")], campaigns, NOW
    )
    [notification] = first.events
    later = T0 + timedelta(minutes=5)
    second = engine.process([notification, _event("u1", "app_open", later, "m2")], campaigns, NOW)
    assert [s["campaign_id"] for s in second.sends] == ["follow_up"]


def _payment_and_follow_up(audience: dict[str, Any]) -> CampaignSet:
    """Return the payment campaign and a follow-up on `app_open` to `audience`."""
    follow_up = _campaign({"type": "event", "event": "app_open"}, who=audience)
    return _campaigns(payment=PAYMENT, follow_up=follow_up)


def _sent_once_audience() -> dict[str, Any]:
    return {
        "type": "inline_segment",
        "definition": {
            "type": "message",
            "action": "sent",
            "campaign_id": "payment",
            "count": {"op": "exactly", "value": 1},
            "window": {"type": "last_days", "days": 30},
        },
    }


def test_own_notification_counted_before_it_comes_back() -> None:
    campaigns = _payment_and_follow_up(_sent_once_audience())
    engine = PartitionEngine(0, EngineRules())
    later = T0 + timedelta(seconds=1)
    effects = engine.process(
        [
            _identify("u1", T0),
            _event("u1", "payment_error", T0, "m1"),
            _event("u1", "app_open", later, "m2"),
        ],
        campaigns,
        NOW,
    )
    assert [s["campaign_id"] for s in effects.sends] == ["payment", "follow_up"]


def test_own_notification_read_back_counted_once() -> None:
    campaigns = _payment_and_follow_up(_sent_once_audience())
    engine = PartitionEngine(0, EngineRules())
    first = engine.process(
        [_identify("u1", T0), _event("u1", "payment_error", T0, "m1")], campaigns, NOW
    )
    [notification] = first.events
    later = T0 + timedelta(minutes=5)
    second = engine.process([notification, _event("u1", "app_open", later, "m2")], campaigns, NOW)
    assert [s["campaign_id"] for s in second.sends] == ["follow_up"]


def test_own_notifications_skipped_without_such_audience() -> None:
    engine = PartitionEngine(0, EngineRules())
    campaigns = _campaigns(payment=PAYMENT)
    first = engine.process(
        [_identify("u1", T0), _event("u1", "payment_error", T0, "m1")], campaigns, NOW
    )
    [notification] = first.events
    # A notification decided later than the watermark, as a flush decides them.
    notification = {**notification, "timestamp": format_timestamp(T0 + timedelta(hours=1))}
    watermark_us = engine.watermark_us
    second = engine.process([notification], campaigns, NOW)
    assert second.changed == set()
    assert not second.meta_changed
    assert engine.watermark_us == watermark_us


def _us(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000


def test_flush_keeps_live_windows() -> None:
    campaigns = _campaigns(cart=CART)
    engine = PartitionEngine(0, EngineRules())
    engine.process([_identify("u1", T0), _event("u1", "add_to_cart", T0)], campaigns, NOW)
    assert engine.flush(campaigns, T0 + timedelta(minutes=59)).sends == []
    [send] = engine.flush(campaigns, T0 + timedelta(hours=2)).sends
    assert send["send_at"] == format_timestamp(T0 + timedelta(hours=1))


@pytest.mark.parametrize(("zone", "sends"), [("UTC", 1), ("Asia/Tokyo", 2)])
def test_calendar_day_cap_follows_the_campaigns_account_zone(zone: str, sends: int) -> None:
    daily = _campaign(
        {"type": "event", "event": "payment_error"},
        {"per_user": {"max_sends": 1, "period": "calendar_day"}},
    )
    entry = catalog_entry(CampaignCreate.model_validate(daily))
    entry["timezone"] = zone
    campaigns = compile_campaigns({"payment": entry}, {})
    engine = PartitionEngine(0, EngineRules())
    # 23:00 and 01:00 in Tokyo: one UTC day, two Tokyo days.
    evening = datetime(2024, 3, 13, 14, 0, tzinfo=UTC)
    envelopes = [
        _identify("u1", evening),
        _event("u1", "payment_error", evening),
        _event("u1", "payment_error", evening + timedelta(hours=2)),
    ]
    assert len(engine.process(envelopes, campaigns, NOW).sends) == sends


@pytest.mark.parametrize(("zone", "sent"), [("UTC", []), ("Asia/Tokyo", ["u1"])])
def test_audience_days_follow_account_zone(zone: str, sent: list[str]) -> None:
    viewed_today = {
        "type": "inline_segment",
        "definition": {
            "type": "event",
            "event": "home",
            "window": {"type": "last_days", "days": 1},
        },
    }
    body = _campaign({"type": "event", "event": "payment_error"}, who=viewed_today)
    entry = catalog_entry(CampaignCreate.model_validate(body))
    entry["timezone"] = zone
    campaigns = compile_campaigns({"payment": entry}, {})
    engine = PartitionEngine(0, EngineRules())
    # 08:30 and 09:30 on one Tokyo day, but on two UTC days.
    late = datetime(2024, 3, 13, 23, 30, tzinfo=UTC)
    envelopes = [
        _identify("u1", late),
        _event("u1", "home", late),
        _event("u1", "payment_error", late + timedelta(hours=1)),
    ]
    sends = engine.process(envelopes, campaigns, NOW).sends
    assert [send["user_id"] for send in sends] == sent


def _four_partitions(
    delivery: dict[str, Any], users: int
) -> tuple[list[PartitionEngine], list[Any]]:
    campaigns = _campaigns(payment=_campaign({"type": "event", "event": "payment_error"}, delivery))
    rules = EngineRules(partitions=4)
    engines = [PartitionEngine(partition, rules) for partition in range(4)]
    effects = []
    for partition, engine in enumerate(engines):
        envelopes = [
            e
            for n in range(partition, users, 4)
            for e in (
                _identify(f"user-{n}", T0),
                _event(f"user-{n}", "payment_error", T0 + timedelta(seconds=n)),
            )
        ]
        effects.append(engine.process(envelopes, campaigns, NOW))
    return engines, effects


def test_partitions_together_keep_the_overall_limit() -> None:
    _, effects = _four_partitions({"limits": {"overall": 10}}, users=200)
    assert sum(len(e.sends) for e in effects) == 10
    assert [len(e.sends) for e in effects] == [3, 3, 2, 2]
    reasons = sum((e.reasons for e in effects), Counter())
    assert reasons == Counter({("payment", "limit_overall"): 190})


def test_partitions_together_keep_the_throttle() -> None:
    engines, effects = _four_partitions({"throttle": {"max_per_5_minutes": 6}}, users=100)
    # Every user triggers within the first 100 seconds, inside one 5-minute bucket.
    assert sum(len(e.sends) for e in effects) == 6
    deferred = [
        item for engine in engines for state in engine.users.values() for item in state["deferred"]
    ]
    assert len(deferred) == 94


def test_throttled_sends_never_share_a_bucket() -> None:
    campaigns = _campaigns(payment=THROTTLED_PAYMENT)
    rules = EngineRules(partitions=4)
    sends = []
    for partition in range(4):
        engine = PartitionEngine(partition, rules)
        users = [f"user-{n}" for n in range(partition, 24, 4)]
        envelopes = [_identify(user, T0) for user in users]
        envelopes += [_event(user, "payment_error", T0 + timedelta(seconds=1)) for user in users]
        sends += engine.process(envelopes, campaigns, NOW).sends
        # A quiet partition's watermark jumps to the wall clock: every held send is due.
        sends += engine.advance(_us(T0 + timedelta(hours=3)), campaigns, NOW).sends

    buckets = Counter(_us(datetime.fromisoformat(s["send_at"])) // 300_000_000 for s in sends)
    assert len(sends) == 24
    assert max(buckets.values()) == 1


def test_late_event_meets_its_buckets_throttle() -> None:
    campaigns = _campaigns(payment=THROTTLED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n}" for n in range(7)]
    envelopes = [_identify(user, T0) for user in users]
    envelopes += [_event(user, "payment_error", T0 + timedelta(seconds=1)) for user in users[:6]]
    effects = [engine.process(envelopes, campaigns, NOW)]
    # The five held sends go out one per bucket, in the five buckets after the first.
    effects.append(engine.advance(_us(T0 + timedelta(hours=1)), campaigns, NOW))
    # An event from the first bucket that arrives an hour late, within the allowed lateness.
    late = _event(users[6], "payment_error", T0 + timedelta(seconds=2))
    effects.append(engine.process([late], campaigns, NOW))

    buckets = Counter(
        _us(datetime.fromisoformat(s["send_at"])) // 300_000_000 for e in effects for s in e.sends
    )
    assert sum(buckets.values()) == 6
    assert max(buckets.values()) == 1
    assert engine.users[users[6]]["deferred"] != []


def test_flushed_sends_keep_their_buckets_throttled() -> None:
    campaigns = _campaigns(payment=THROTTLED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    first = [f"first-{n}" for n in range(40)]
    then = [f"then-{n}" for n in range(20)]
    envelopes = [_identify(user, T0) for user in first + then]
    envelopes += [_event(user, "payment_error", T0 + timedelta(seconds=1)) for user in first]
    effects = [engine.process(envelopes, campaigns, NOW)]
    # The end of a replay: the 39 held sends go out one per bucket, far past the watermark.
    effects.append(engine.flush(campaigns, NOW))
    later = T0 + timedelta(minutes=10)
    effects.append(
        engine.process([_event(user, "payment_error", later) for user in then], campaigns, NOW)
    )
    effects.append(engine.flush(campaigns, NOW))

    buckets = Counter(
        _us(datetime.fromisoformat(s["send_at"])) // 300_000_000 for e in effects for s in e.sends
    )
    assert sum(buckets.values()) == 60
    assert max(buckets.values()) == 1


def _slot(at_us: int) -> int:
    """Return the 5-minute slot holding `at_us`, counted from the slot of T0."""
    return at_us // 300_000_000 - _us(T0) // 300_000_000


def test_held_sends_book_buckets_in_order() -> None:
    campaigns = _campaigns(payment=THROTTLED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n:02d}" for n in range(30)]
    envelopes = [_identify(user, T0) for user in users]
    # Triggered in reverse name order, so that the order of the queue is not the heap's.
    envelopes += [
        _event(user, "payment_error", T0 + timedelta(seconds=1 + n))
        for n, user in enumerate(reversed(users))
    ]
    effects = [engine.process(envelopes, campaigns, NOW)]

    held = {
        user: _slot(item[2]) for user, state in engine.users.items() for item in state["deferred"]
    }
    # Each of the 29 held sends has a bucket of its own, booked when it was held.
    assert sorted(held.values()) == list(range(1, 30))
    assert [held[user] for user in reversed(users[:-1])] == list(range(1, 30))

    # A user who unsubscribes while held is not sent to; the others keep their buckets.
    leaving = users[10]
    unsubscribe = {**_identify(leaving, T0 + timedelta(minutes=1)), "traits": {"MSG-push": False}}
    effects.append(engine.process([unsubscribe], campaigns, NOW))
    effects.append(engine.advance(_us(T0 + timedelta(hours=3)), campaigns, NOW))

    sent = {
        s["user_id"]: _slot(_us(datetime.fromisoformat(s["send_at"])))
        for e in effects
        for s in e.sends
    }
    assert len(sent) == 29
    assert leaving not in sent
    assert {user: bucket for user, bucket in held.items() if user != leaving} == {
        user: bucket for user, bucket in sent.items() if bucket > 0
    }
    reasons = sum((e.reasons for e in effects), Counter())
    assert reasons == Counter({("payment", "unsubscribed"): 1})
    assert engine.counters["payment"].get("held") == {}


def _held_buckets(engine: PartitionEngine) -> dict[str, int]:
    return dict(engine.counters["payment"].get("held", {}))


def test_flush_writes_a_place_given_back() -> None:
    campaigns = _campaigns(payment=THROTTLED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    users = ["a", "b"]
    engine.process([_identify(user, T0) for user in users], campaigns, NOW)
    engine.process(
        [_event(user, "payment_error", T0 + timedelta(seconds=1)) for user in users],
        campaigns,
        NOW,
    )
    # b unsubscribes while held. The flush decides only b, sends nothing, and gives b's
    # place back, which the partition's record must then show.
    unsubscribe = {**_identify("b", T0 + timedelta(seconds=2)), "traits": {"MSG-push": False}}
    engine.process([unsubscribe], campaigns, NOW)
    held_before = _held_buckets(engine)

    effects = engine.flush(campaigns, NOW)

    assert len(held_before) == 1
    assert effects.meta_changed
    assert _held_buckets(engine) == {}
    assert effects.reasons == Counter({("payment", "unsubscribed"): 1})


def test_held_event_copy_books_nothing() -> None:
    campaigns = _campaigns(payment=THROTTLED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    engine.process([_identify(user, T0) for user in ("a", "b", "c")], campaigns, NOW)
    held_event = _event("b", "payment_error", T0 + timedelta(seconds=2))
    effects = [
        engine.process(
            [_event("a", "payment_error", T0 + timedelta(seconds=1)), held_event], campaigns, NOW
        ),
        # A client that retries its request sends the same event again.
        engine.process([held_event], campaigns, NOW),
        engine.process([_event("c", "payment_error", T0 + timedelta(seconds=3))], campaigns, NOW),
    ]
    assert len(engine.users["b"]["deferred"]) == 1
    effects.append(engine.advance(_us(T0 + timedelta(hours=1)), campaigns, NOW))

    sent = sorted(
        (_slot(_us(datetime.fromisoformat(s["send_at"]))), s["user_id"])
        for e in effects
        for s in e.sends
    )
    assert sent == [(0, "a"), (1, "b"), (2, "c")]


def test_held_send_keeps_its_place() -> None:
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    quiet = {"windows": [{"weekdays": every_day, "start": "10:10", "end": "10:20"}]}
    campaigns = _campaigns(
        payment=_campaign(
            {"type": "event", "event": "payment_error"},
            {"throttle": {"max_per_5_minutes": 1}, "quiet_hours": {**quiet, "action": "defer"}},
        )
    )
    engine = PartitionEngine(0, EngineRules())
    users = ["a", "b", "c", "d", "u"]
    engine.process([_identify(user, T0) for user in users], campaigns, NOW)
    # a goes at 10:00; b, c, d and u are held for 10:05, 10:10, 10:15 and 10:20.
    triggers = [
        _event(user, "payment_error", T0 + timedelta(seconds=1 + n), f"first-{user}")
        for n, user in enumerate(users)
    ]
    effects = [engine.process(triggers, campaigns, NOW)]
    # In quiet hours u triggers again, with an id that sorts first; quiet hours defer it to
    # 10:20, where u's first message has its place.
    again = _event("u", "payment_error", T0 + timedelta(minutes=12), "again-u")
    effects.append(engine.process([again], campaigns, NOW))
    effects.append(engine.advance(_us(T0 + timedelta(hours=2)), campaigns, NOW))

    sent_at = {
        s["trigger_id"]: datetime.fromisoformat(s["send_at"]) for e in effects for s in e.sends
    }
    assert sent_at["first-u"] == T0 + timedelta(minutes=20)
    assert sent_at["again-u"] > T0 + timedelta(minutes=20)


def test_held_send_past_the_campaigns_end_is_reported() -> None:
    end_at = T0 + timedelta(minutes=12)
    campaigns = _campaigns(
        payment=_campaign(
            {"type": "event", "event": "payment_error", "end_at": end_at.isoformat()},
            {"throttle": {"max_per_5_minutes": 1}},
        )
    )
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n}" for n in range(6)]
    engine.process([_identify(user, T0) for user in users], campaigns, NOW)
    effects = [
        engine.process(
            [_event(user, "payment_error", T0 + timedelta(seconds=1)) for user in users],
            campaigns,
            NOW,
        ),
        engine.advance(_us(T0 + timedelta(hours=3)), campaigns, NOW),
    ]

    # Slots at 10:00, 10:05 and 10:10 are before the end. The other three would be after
    # it, so they are reported when they are triggered.
    assert sum(len(e.sends) for e in effects) == 3
    assert effects[0].reasons == Counter({("payment", "campaign_stopped"): 3})
    assert effects[1].reasons == Counter()
    details = {
        ev["properties"]["detail"]
        for e in effects
        for ev in e.events
        if ev["event"] == "Notification Not Sent"
    }
    assert details == {"past the campaign's end at 2024-03-13T10:12:00.000000Z"}


def test_stopped_campaign_reports_held_sends_at_once() -> None:
    campaigns = _campaigns(payment=THROTTLED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n:02d}" for n in range(30)]
    engine.process([_identify(user, T0) for user in users], campaigns, NOW)
    triggers = [_event(user, "payment_error", T0 + timedelta(seconds=1)) for user in users]
    sent = engine.process(triggers, campaigns, NOW).sends
    entry = catalog_entry(CampaignCreate.model_validate(THROTTLED_PAYMENT), state="stopped")
    stopped = compile_campaigns({"payment": entry}, {})

    # The next event after the stop, a minute on, decides the 29 held sends at once.
    effects = engine.process(
        [_event("user-00", "app_open", T0 + timedelta(minutes=1))], stopped, NOW
    )

    assert len(sent) == 1
    assert effects.sends == []
    assert effects.reasons == Counter({("payment", "campaign_stopped"): 29})
    assert effects.meta_changed
    assert _held_buckets(engine) == {}
    assert all(state["deferred"] == [] for state in engine.users.values())


def test_spent_limit_reports_held_sends_at_once() -> None:
    limited = _campaign(
        {"type": "event", "event": "payment_error"},
        {"throttle": {"max_per_5_minutes": 1}, "limits": {"overall": 2}},
    )
    campaigns = _campaigns(payment=limited)
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n:02d}" for n in range(30)]
    engine.process([_identify(user, T0) for user in users], campaigns, NOW)
    triggers = [_event(user, "payment_error", T0 + timedelta(seconds=1)) for user in users]
    effects = [engine.process(triggers, campaigns, NOW)]

    # The second send, in the next slot, spends the limit. The 28 messages still held are
    # reported when the watermark passes it, not a slot apart each.
    effects.append(engine.advance(_us(T0 + timedelta(minutes=5)), campaigns, NOW))
    effects.append(engine.advance(_us(T0 + timedelta(minutes=5, seconds=1)), campaigns, NOW))

    assert sum(len(e.sends) for e in effects) == 2
    reasons = sum((e.reasons for e in effects), Counter())
    assert reasons == Counter({("payment", "limit_overall"): 28})
    assert _held_buckets(engine) == {}
    assert all(state["deferred"] == [] for state in engine.users.values())


def test_delayed_send_past_the_campaigns_end_is_reported() -> None:
    end_at = T0 + timedelta(minutes=12)
    when = {"type": "event", "event": "payment_error", "delay": "PT20M"}
    campaigns = _campaigns(payment=_campaign({**when, "end_at": end_at.isoformat()}))
    engine = PartitionEngine(0, EngineRules())
    engine.process([_identify("user-1", T0)], campaigns, NOW)
    effects = [
        engine.process(
            [_event("user-1", "payment_error", T0 + timedelta(minutes=1))], campaigns, NOW
        ),
        engine.advance(_us(T0 + timedelta(hours=1)), campaigns, NOW),
    ]

    assert [len(e.sends) for e in effects] == [0, 0]
    assert effects[1].reasons == Counter({("payment", "campaign_stopped"): 1})


def test_untimely_events_are_counted() -> None:
    campaigns = _campaigns(payment=PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    live = T0 + timedelta(hours=5)
    effects = engine.process(
        [
            _identify("user-1", live),
            _event("user-1", "payment_error", live),
            # Three hours behind the watermark: it lands, but starts nothing.
            _event("user-1", "payment_error", live - timedelta(hours=3)),
            _event("user-1", "app_open", live - timedelta(hours=3)),
        ],
        campaigns,
        NOW,
    )

    assert len(effects.sends) == 1
    assert effects.untimely == 1


def test_campaign_with_zoned_time_of_day_is_skipped() -> None:
    # A stored definition may hold a zoned time (00:22:00Z), which cannot be compared with
    # local times. The campaign is left out rather than fail on every message.
    body = _campaign({"type": "event", "event": "payment_error"})
    entry = catalog_entry(CampaignCreate.model_validate(body))
    entry["live_definition"]["delivery"]["cutoff_local_time"] = "00:22:00Z"

    campaigns = compile_campaigns(
        {
            "payment": entry,
            "cart": catalog_entry(
                CampaignCreate.model_validate(_campaign({"type": "event", "event": "add_to_cart"}))
            ),
        },
        {},
    )
    effects = PartitionEngine(0, EngineRules()).process(
        [_identify("u1", T0), _event("u1", "payment_error", T0), _event("u1", "add_to_cart", T0)],
        campaigns,
        NOW,
    )

    assert sorted(campaigns.by_id) == ["cart"]
    assert [send["campaign_id"] for send in effects.sends] == ["cart"]


# Bounded user state -------------------------------------------------------------------

# A user's state is one Kafka record, and the broker's default limit is 1 MiB.
RECORD_LIMIT = 1024 * 1024


def test_trigger_burst_bounded() -> None:
    day_cart = _campaign(
        {
            "type": "inaction",
            "did": {"event": "add_to_cart"},
            "did_not": {"event": "purchase"},
            "within": "P1D",
        }
    )
    campaigns = _campaigns(cart=day_cart)
    engine = PartitionEngine(0, EngineRules())
    burst = [
        _event("u1", "add_to_cart", T0 + timedelta(seconds=n), f"cart-{n}")
        for n in range(MAX_WAITING + 3)
    ]
    effects = engine.process([_identify("u1", T0), *burst], campaigns, NOW)

    state = engine.users["u1"]
    assert len(state["triggers"]["pending"]) == MAX_WAITING
    assert effects.reasons == Counter({("cart", "too_many_waiting"): 3})
    rejected = [e for e in effects.events if e["event"] == NOT_SENT_EVENT]
    assert [e["properties"]["trigger_id"] for e in rejected] == [
        f"cart-{n}" for n in range(MAX_WAITING, MAX_WAITING + 3)
    ]
    assert len(orjson.dumps(state)) < RECORD_LIMIT

    # A copy of a rejected event is not reported twice.
    again = engine.process([burst[-1]], campaigns, NOW)
    assert again.events == []
    assert again.reasons == Counter()

    later = engine.advance(_us(T0 + timedelta(days=2)), campaigns, NOW)
    assert len(later.sends) == MAX_WAITING
    assert state["triggers"]["pending"] == []


def test_deferral_past_bound_reported() -> None:
    campaigns = _campaigns(payment=NIGHT_DEFERRED_PAYMENT)
    engine = PartitionEngine(0, EngineRules())
    night = datetime(2024, 3, 13, 23, tzinfo=UTC)
    errors = [
        _event("u1", "payment_error", night + timedelta(seconds=n)) for n in range(MAX_WAITING + 2)
    ]
    effects = engine.process([_identify("u1", night), *errors], campaigns, NOW)

    assert effects.sends == []
    assert len(engine.users["u1"]["deferred"]) == MAX_WAITING
    assert effects.reasons == Counter({("payment", "too_many_waiting"): 2})
    morning = engine.advance(_us(datetime(2024, 3, 14, 8, tzinfo=UTC)), campaigns, NOW)
    assert len(morning.sends) == MAX_WAITING


def _large_state() -> dict[str, Any]:
    return {
        "profile": {"user_id": "u1", "anonymous_id": None, "traits": {"plan": "pro"}},
        "triggers": {"pending": [["cart", "m1", 5]], "cancels": {"k": list(range(64))}},
        "deferred": [],
        "history": {
            "channels": {"push": list(range(1000))},
            "campaigns": {"cart": {"total": 1000, "recent": list(range(1000))}},
        },
        "behaviour": {"features": {}},
        "ledger": {f"{n:032x}": 1_700_000_000 + n for n in range(10_000)},
    }


def test_fit_state_drops_oldest_ledger_first() -> None:
    state = _large_state()
    encoded, trimmed = fit_state(state, 300_000)

    assert trimmed == ["send ids of the ledger"]
    assert len(encoded) <= 300_000
    assert orjson.loads(encoded) == state
    remaining = sorted(state["ledger"].values())
    assert remaining[-1] == 1_700_000_000 + 9_999
    assert remaining == list(range(remaining[0], 1_700_000_000 + 10_000))
    assert state["triggers"]["pending"] == [["cart", "m1", 5]]


def test_fit_state_keeps_waiting_messages() -> None:
    state = _large_state()
    encoded, trimmed = fit_state(state, 200)

    assert trimmed == [
        "send ids of the ledger",
        "send history",
        "times of cancelling events",
    ]
    assert state["ledger"] == {}
    assert state["triggers"]["pending"] == [["cart", "m1", 5]]
    assert state["profile"]["traits"] == {"plan": "pro"}
    # Still too large once everything it may trim is gone; the caller decides.
    assert len(encoded) == len(orjson.dumps(state))


def test_fit_state_leaves_a_small_state_alone() -> None:
    state = _large_state()
    before = orjson.dumps(state)
    assert fit_state(state, RECORD_LIMIT) == (before, [])


SPAMMERS = {
    "type": "inline_segment",
    "definition": {"type": "event", "event": "spam", "window": {"type": "last_days", "days": 7}},
}


def test_audience_counters_stay_bounded() -> None:
    hot = _campaign({"type": "event", "event": "hot", "delay": "PT2M"}, who=SPAMMERS)
    campaigns = _campaigns(hot=hot)
    engine = PartitionEngine(0, EngineRules())
    spam = [
        _event("h1", "spam", T0 + timedelta(microseconds=1000 * n), f"spam-{n}")
        for n in range(20_000)
    ]
    later = T0 + timedelta(minutes=1)
    engine.process([_identify("h1", T0), *spam, _event("h1", "hot", later)], campaigns, NOW)

    assert len(orjson.dumps(engine.users["h1"])) < 50_000
    [send] = engine.advance(_us(later + timedelta(minutes=3)), campaigns, NOW).sends
    assert send["user_id"] == "h1"


def test_copy_of_pending_trigger_takes_no_room() -> None:
    delayed = _campaign({"type": "event", "event": "burst", "delay": "PT2M"})
    campaigns = _campaigns(burst=delayed)
    engine = PartitionEngine(0, EngineRules())
    events = [
        _event("u3", "burst", T0 + timedelta(milliseconds=n), f"b-{n}")
        for n in range(MAX_WAITING - 1)
    ]
    copy = events[0]
    last = _event("u3", "burst", T0 + timedelta(seconds=5), "b-last")
    effects = engine.process([_identify("u3", T0), *events, copy, last], campaigns, NOW)

    assert effects.reasons == Counter()
    assert len(engine.users["u3"]["triggers"]["pending"]) == MAX_WAITING
    again = engine.process([copy], campaigns, NOW)
    assert again.reasons == Counter()
    sent = engine.advance(_us(T0 + timedelta(minutes=5)), campaigns, NOW).sends
    assert len({s["send_id"] for s in sent}) == MAX_WAITING
    assert len(sent) == MAX_WAITING


def test_crowded_trigger_outside_audience_unreported() -> None:
    hot = _campaign({"type": "event", "event": "hot", "delay": "PT2M"}, who=SPAMMERS)
    campaigns = _campaigns(hot=hot)
    engine = PartitionEngine(0, EngineRules())
    events = [
        _event("h3", "hot", T0 + timedelta(milliseconds=n), f"hot-{n}")
        for n in range(MAX_WAITING + 5)
    ]
    effects = engine.process([_identify("h3", T0), *events], campaigns, NOW)

    assert effects.reasons == Counter()
    assert effects.events == []
    assert engine.users["h3"]["triggers"]["pending"] == []


def test_ledger_pruned_in_steps() -> None:
    delayed = _campaign({"type": "event", "event": "ping"})
    campaigns = _campaigns(ping=delayed)
    engine = PartitionEngine(0, EngineRules())
    pings = [
        _event("l1", "ping", T0 + timedelta(milliseconds=n), f"ping-{n}") for n in range(10_001)
    ]
    effects = engine.process([_identify("l1", T0), *pings], campaigns, NOW)

    ledger = engine.users["l1"]["ledger"]
    assert len(effects.sends) == 10_001
    assert len(ledger) == 7_500
    assert send_id_of("ping", "ping-10000", "l1") in ledger
    assert send_id_of("ping", "ping-2500", "l1") not in ledger
    assert send_id_of("ping", "ping-2501", "l1") in ledger


def test_user_who_left_audience_reported() -> None:
    pros = {
        "type": "inline_segment",
        "definition": {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"},
    }
    later = _campaign({"type": "event", "event": "w_evt", "delay": "PT1M"}, who=pros)
    campaigns = _campaigns(later=later)
    engine = PartitionEngine(0, EngineRules())
    events = [
        _identify("stays", T0, plan="pro"),
        _identify("leaves", T0, plan="pro"),
        _event("stays", "w_evt", T0 + timedelta(seconds=1)),
        _event("leaves", "w_evt", T0 + timedelta(seconds=1)),
        _identify("leaves", T0 + timedelta(seconds=5), plan="free"),
    ]
    engine.process(events, campaigns, NOW)

    effects = engine.advance(_us(T0 + timedelta(minutes=2)), campaigns, NOW)

    assert [send["user_id"] for send in effects.sends] == ["stays"]
    assert effects.reasons == Counter({("later", "left_audience"): 1})
    not_sent = [event for event in effects.events if event["event"] == NOT_SENT_EVENT]
    assert [event["user_id"] for event in not_sent] == ["leaves"]


def test_trigger_outside_audience_takes_no_room() -> None:
    everyone = _campaign({"type": "event", "event": "w_evt", "delay": "PT5M"})
    pros = {
        "type": "inline_segment",
        "definition": {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"},
    }
    only_pros = _campaign({"type": "event", "event": "w_evt", "delay": "PT5M"}, who=pros)
    campaigns = _campaigns(w=everyone, w2=only_pros)
    engine = PartitionEngine(0, EngineRules())
    events = [
        _event("big1", "w_evt", T0 + timedelta(milliseconds=n), f"w-{n}")
        for n in range(MAX_WAITING + 100)
    ]
    effects = engine.process([_identify("big1", T0), *events], campaigns, NOW)

    pending = engine.users["big1"]["triggers"]["pending"]
    assert {item[0] for item in pending} == {"w"}
    assert len(pending) == MAX_WAITING
    assert effects.reasons == Counter({("w", "too_many_waiting"): 100})
    sent = engine.advance(_us(T0 + timedelta(minutes=10)), campaigns, NOW).sends
    assert len(sent) == MAX_WAITING
