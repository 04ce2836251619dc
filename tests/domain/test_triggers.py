"""Event-time triggers: action sends, inaction windows and their boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.triggers import (
    MAX_KEPT_CANCELS,
    TriggerState,
    compile_trigger,
    due_fires,
    epoch_us,
    on_event,
)
from schemas.campaign import EventTrigger, InactionTrigger

T0 = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
HOUR_US = 3600 * 1_000_000

CART = compile_trigger(
    "cart",
    InactionTrigger.model_validate(
        {
            "type": "inaction",
            "did": {"event": "add_to_cart"},
            "did_not": {"event": "purchase"},
            "within": "PT1H",
        }
    ),
)
PAYMENT = compile_trigger(
    "pay", EventTrigger.model_validate({"type": "event", "event": "payment_error"})
)
WELCOME = compile_trigger(
    "welcome",
    EventTrigger.model_validate(
        {
            "type": "event",
            "event": "home",
            "profile_filters": [{"property": "user_lifecycle", "op": "eq", "value": "new"}],
        }
    ),
)
INACTION = frozenset({"cart"})


def _event(
    name: str, at: datetime, message_id: str = "m", user: str = "u1", **properties: object
) -> dict[str, object]:
    return {
        "type": "track",
        "event": name,
        "user_id": user,
        "message_id": message_id,
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "properties": properties,
    }


def _us(at: datetime) -> int:
    return epoch_us(at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def _feed(
    state: TriggerState, *events: dict[str, object], traits: dict[str, object] | None = None
) -> list[object]:
    fires: list[object] = []
    for event in events:
        # The engine advances the watermark to an event's time before triggering on it.
        watermark = max(_us(T0), epoch_us(str(event["timestamp"])))
        fires += on_event([CART, PAYMENT, WELCOME], state, event, traits or {}, watermark)
    return fires


def test_epoch_us_reads_microseconds() -> None:
    assert epoch_us("1970-01-01T00:00:01.000002Z") == 1_000_002


def test_inaction_fires_at_window_end() -> None:
    state = TriggerState()
    assert _feed(state, _event("add_to_cart", T0, "a1")) == []
    assert due_fires(state, "u1", _us(T0) + HOUR_US, INACTION) == []
    [fire] = due_fires(state, "u1", _us(T0) + HOUR_US + 1, INACTION)
    assert (fire.campaign_id, fire.trigger_id, fire.fire_at_us) == ("cart", "a1", _us(T0) + HOUR_US)
    assert state.pending == []


def test_purchase_at_same_time_cancels() -> None:
    state = TriggerState()
    _feed(state, _event("add_to_cart", T0), _event("purchase", T0))
    assert due_fires(state, "u1", _us(T0) + 2 * HOUR_US, INACTION) == []


def test_purchase_processed_first_cancels() -> None:
    state = TriggerState()
    _feed(state, _event("purchase", T0), _event("add_to_cart", T0))
    assert due_fires(state, "u1", _us(T0) + 2 * HOUR_US, INACTION) == []


def test_purchase_exactly_one_hour_later_cancels() -> None:
    state = TriggerState()
    _feed(state, _event("add_to_cart", T0), _event("purchase", T0 + timedelta(hours=1)))
    assert due_fires(state, "u1", _us(T0) + 2 * HOUR_US, INACTION) == []


def test_purchase_after_window_does_not_cancel() -> None:
    state = TriggerState()
    _feed(
        state,
        _event("add_to_cart", T0),
        _event("purchase", T0 + timedelta(hours=1, microseconds=1)),
    )
    assert len(due_fires(state, "u1", _us(T0) + 2 * HOUR_US, INACTION)) == 1


def test_earlier_purchase_outside_window_keeps_it() -> None:
    state = TriggerState()
    _feed(state, _event("purchase", T0 - timedelta(seconds=1)), _event("add_to_cart", T0))
    assert len(due_fires(state, "u1", _us(T0) + 2 * HOUR_US, INACTION)) == 1


def test_each_add_to_cart_opens_window() -> None:
    state = TriggerState()
    _feed(
        state,
        _event("add_to_cart", T0, "a1"),
        _event("add_to_cart", T0 + timedelta(minutes=30), "a2"),
    )
    fires = due_fires(state, "u1", _us(T0) + 3 * HOUR_US, INACTION)
    assert [fire.trigger_id for fire in fires] == ["a1", "a2"]


def test_purchase_cancels_only_covering_windows() -> None:
    state = TriggerState()
    _feed(
        state,
        _event("add_to_cart", T0, "a1"),
        _event("add_to_cart", T0 + timedelta(minutes=90), "a2"),
        _event("purchase", T0 + timedelta(minutes=100)),
    )
    fires = due_fires(state, "u1", _us(T0) + 4 * HOUR_US, INACTION)
    assert [fire.trigger_id for fire in fires] == ["a1"]


def test_action_fires_at_once() -> None:
    state = TriggerState()
    [fire] = _feed(state, _event("payment_error", T0, "p1"))
    assert (fire.campaign_id, fire.trigger_id, fire.fire_at_us) == ("pay", "p1", _us(T0))


def test_action_delay_waits_for_watermark() -> None:
    delayed = compile_trigger(
        "later", EventTrigger.model_validate({"type": "event", "event": "home", "delay": "PT10M"})
    )
    state = TriggerState()
    assert on_event([delayed], state, _event("home", T0), {}, _us(T0)) == []
    due_at = _us(T0) + 600 * 1_000_000
    assert due_fires(state, "u1", due_at - 1, frozenset()) == []
    assert [fire.fire_at_us for fire in due_fires(state, "u1", due_at, frozenset())] == [due_at]


def test_profile_filter_reads_current_traits() -> None:
    state = TriggerState()
    assert _feed(state, _event("home", T0), traits={"user_lifecycle": "returning"}) == []
    [fire] = _feed(state, _event("home", T0), traits={"user_lifecycle": "new"})
    assert fire.campaign_id == "welcome"


def test_late_event_does_not_trigger() -> None:
    state = TriggerState()
    late = _event("payment_error", T0 - timedelta(hours=2, seconds=1))
    assert on_event([PAYMENT], state, late, {}, _us(T0)) == []
    on_time = _event("payment_error", T0 - timedelta(hours=2))
    assert len(on_event([PAYMENT], state, on_time, {}, _us(T0))) == 1


def test_event_far_ahead_not_triggering() -> None:
    state = TriggerState()
    ahead = _event("payment_error", T0 + timedelta(minutes=2, microseconds=1))
    assert on_event([PAYMENT], state, ahead, {}, _us(T0)) == []
    just_ahead = _event("payment_error", T0 + timedelta(minutes=2))
    assert len(on_event([PAYMENT], state, just_ahead, {}, _us(T0))) == 1


def test_late_purchase_still_cancels() -> None:
    state = TriggerState()
    on_event(
        [CART],
        state,
        _event("add_to_cart", T0 - timedelta(hours=3)),
        {},
        _us(T0 - timedelta(hours=3)),
    )
    on_event([CART], state, _event("purchase", T0 - timedelta(hours=3)), {}, _us(T0))
    assert state.pending == []


def test_late_cart_finds_earlier_cancel() -> None:
    state = TriggerState()
    watermark = _us(T0 + timedelta(hours=3))
    for minutes in (30, 150):  # inside the cart's hour, then long after it
        purchase = _event("purchase", T0 + timedelta(minutes=minutes), f"p{minutes}")
        on_event([CART], state, purchase, {}, watermark)
    on_event([CART], state, _event("add_to_cart", T0, "late-cart"), {}, watermark)
    assert state.pending == []


def test_cancel_without_window_records_time() -> None:
    state = TriggerState(pending=[["pay", "p1", _us(T0)]])
    pending = state.pending
    on_event([CART], state, _event("purchase", T0), {}, _us(T0))
    assert state.cancels == {CART.cancel_key: [_us(T0)]}
    assert state.changed
    assert state.pending is pending


def test_known_cancel_without_window_unchanged() -> None:
    state = TriggerState(cancels={CART.cancel_key: [_us(T0)]})
    on_event([CART], state, _event("purchase", T0), {}, _us(T0))
    assert state.cancels == {CART.cancel_key: [_us(T0)]}
    assert not state.changed


def test_cancel_leaves_other_campaigns_windows() -> None:
    window = ["other", "a1", _us(T0) + HOUR_US]
    state = TriggerState(pending=[window], cancels={CART.cancel_key: [_us(T0)]})
    on_event([CART], state, _event("purchase", T0), {}, _us(T0))
    assert state.pending == [window]
    assert not state.changed


def test_cancel_removes_only_covering_windows() -> None:
    covering = ["cart", "a1", _us(T0) + HOUR_US]
    ended = ["cart", "a0", _us(T0) - 1]
    state = TriggerState(pending=[ended, covering, ["pay", "p1", _us(T0)]])
    on_event([CART], state, _event("purchase", T0), {}, _us(T0))
    assert state.pending == [ended, ["pay", "p1", _us(T0)]]
    assert state.changed


def test_cancels_keep_latest_times() -> None:
    state = TriggerState()
    times = [_us(T0) + second * 1_000_000 for second in range(MAX_KEPT_CANCELS + 2)]
    for at_us in times:
        purchase = _event("purchase", T0)
        on_event([CART], state, purchase, {}, at_us, at_us=at_us)
    assert state.cancels == {CART.cancel_key: times[-MAX_KEPT_CANCELS:]}


def test_property_filters_select_events() -> None:
    big = compile_trigger(
        "big",
        EventTrigger.model_validate(
            {
                "type": "event",
                "event": "purchase",
                "property_filters": [{"property": "amount", "op": "gte", "value": 100}],
            }
        ),
    )
    state = TriggerState()
    assert on_event([big], state, _event("purchase", T0, amount=99), {}, _us(T0)) == []
    assert on_event([big], state, _event("purchase", T0, amount="100"), {}, _us(T0)) == []
    assert len(on_event([big], state, _event("purchase", T0, amount=100), {}, _us(T0))) == 1


def test_state_round_trips_as_json() -> None:
    state = TriggerState()
    _feed(state, _event("add_to_cart", T0, "a1"), _event("purchase", T0 - timedelta(days=1)))
    restored = TriggerState.from_json(state.to_json())
    assert restored == state
    assert TriggerState.from_json(None) == TriggerState()


def _cart_without(campaign_id: str, did_not: dict[str, object], within: str = "PT1H"):  # type: ignore[no-untyped-def]
    when = {"type": "inaction", "did": {"event": "add_to_cart"}, "did_not": did_not}
    return compile_trigger(campaign_id, InactionTrigger.model_validate({**when, "within": within}))


def test_campaigns_with_one_cancel_condition_share_its_times() -> None:
    short = _cart_without("short", {"event": "purchase"}, "PT10M")
    state = TriggerState()
    on_event([CART, short], state, _event("purchase", T0), {}, _us(T0))
    assert state.cancels == {CART.cancel_key: [_us(T0)]}
    assert short.cancel_key == CART.cancel_key


def test_cancel_key_follows_event_and_filters() -> None:
    big = {
        "event": "purchase",
        "property_filters": [{"property": "total", "op": "gt", "value": 10}],
    }
    keys = {
        CART.cancel_key,
        _cart_without("big", big).cancel_key,
        _cart_without("refund", {"event": "refund"}).cancel_key,
    }
    assert len(keys) == 3


def test_cancel_key_is_stable() -> None:
    # Kept in stored user states: a new key would lose the cancels recorded before.
    assert CART.cancel_key == "f8d9fca1233621f6"
