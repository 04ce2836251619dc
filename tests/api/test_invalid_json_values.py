"""Control-plane requests whose JSON values or text the API cannot store or send back.

Python's JSON reader accepts NaN, Infinity, integers of any size and unpaired surrogates,
and PostgreSQL's text columns reject the NUL character. Each case must get 422 naming
the field, and nothing may be stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.control_support import ControlApi, push_campaign

# A placeholder string in a JSON body, replaced by the raw bytes of the value under test.
SLOT = "__raw_value__"


def _raw_body(body: Any, raw: bytes) -> bytes:
    encoded = json.dumps(body).encode()
    assert encoded.count(f'"{SLOT}"'.encode()) == 1
    return encoded.replace(f'"{SLOT}"'.encode(), raw)


def _post_raw(api: ControlApi, path: str, body: bytes) -> Any:
    headers = {**api.headers(api.admin), "content-type": "application/json"}
    return api.client.post(path, content=body, headers=headers)


def _only_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert isinstance(error, dict)
    return error


def _inline_trait_campaign(value: Any) -> dict[str, Any]:
    definition = {"type": "trait", "trait": "plan", "op": "eq", "value": value}
    return push_campaign(who={"type": "inline_segment", "definition": definition})


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"NaN", "NaN"),
        (b"Infinity", "Infinity"),
        (b"-Infinity", "-Infinity"),
        (b"1e400", "Infinity"),
    ],
)
def test_non_finite_number_rejected(control_api: ControlApi, raw: bytes, name: str) -> None:
    body = _raw_body(_inline_trait_campaign(SLOT), raw)

    error = _only_error(_post_raw(control_api, "/campaigns", body))

    assert error["loc"] == ["body", "who", "definition", "value"]
    assert error["type"] == "json_invalid"
    assert error["msg"].startswith(f"{name} is not a valid JSON number")
    assert control_api.get("/campaigns", control_api.admin).json() == []


def test_integer_beyond_64_bits_rejected(control_api: ControlApi) -> None:
    definition = {"type": "trait", "trait": "visits", "op": "gt", "value": SLOT}
    body = _raw_body({"name": "Regulars", "definition": definition}, b"1" + b"0" * 400)

    error = _only_error(_post_raw(control_api, "/segments", body))

    assert error["loc"] == ["body", "definition", "value"]
    assert error["msg"].startswith("integer of 401 digits is outside the 64-bit range")
    assert control_api.get("/segments", control_api.admin).json() == []


def test_body_not_utf8_rejected(control_api: ControlApi) -> None:
    body = _raw_body({"name": "Regulars", "definition": {"type": SLOT}}, b'"\xff\xfe"')

    error = _only_error(_post_raw(control_api, "/segments", body))

    offset = body.index(b"\xff")
    assert error["loc"] == ["body"]
    assert error["msg"].startswith(f"body is not valid UTF-8: byte 0xff at offset {offset} ")
    assert control_api.get("/segments", control_api.admin).json() == []


def test_surrogate_in_value_rejected(control_api: ControlApi) -> None:
    body = _raw_body(push_campaign(name=SLOT), b'"Sale \\ud800"')

    error = _only_error(_post_raw(control_api, "/campaigns", body))

    assert error["loc"] == ["body", "name"]
    assert error["msg"].startswith("contains the unpaired surrogate U+D800")
    assert control_api.get("/campaigns", control_api.admin).json() == []


def test_surrogate_in_key_rejected(control_api: ControlApi) -> None:
    body = json.dumps({**push_campaign(), SLOT: 1}).encode()
    body = body.replace(f'"{SLOT}"'.encode(), b'"\\udfff"')

    error = _only_error(_post_raw(control_api, "/campaigns", body))

    assert error["loc"] == ["body", "\\udfff"]
    assert error["msg"].startswith("key contains the unpaired surrogate U+DFFF")
    assert control_api.get("/campaigns", control_api.admin).json() == []


def test_deep_nesting_rejected(control_api: ControlApi) -> None:
    definition = {"type": "trait", "trait": "plan", "op": "eq", "value": SLOT}
    body = _raw_body({"name": "Deep", "definition": definition}, b"[" * 10_000 + b"]" * 10_000)

    error = _only_error(_post_raw(control_api, "/segments", body))

    assert error["loc"] == ["body"]
    assert error["msg"].startswith("JSON is nested too deeply to decode")


def test_nul_in_stored_text_rejected(control_api: ControlApi) -> None:
    cases = [
        ("/campaigns", push_campaign(name="Spring\x00sale"), ["body", "name"]),
        ("/segments", {"name": "\x00", "definition": {"type": "has_contact", "channel": "email"}},
         ["body", "name"]),
        ("/users", {"email": "a\x00@shop.test", "role": "creator"}, ["body", "email"]),
    ]  # fmt: skip
    for path, body, loc in cases:
        error = _only_error(control_api.post(path, control_api.admin, body))

        assert error["loc"] == loc, path
        assert error["type"] == "string_nul_character", path
        assert error["msg"] == (
            "must not contain the NUL character (U+0000), which the control-plane database "
            "cannot store"
        )
    assert control_api.get("/campaigns", control_api.admin).json() == []
    assert control_api.get("/segments", control_api.admin).json() == []


def test_nul_in_path_and_query_rejected(control_api: ControlApi) -> None:
    cases = [
        ("/campaigns/cmp%00x", ["path", "campaign_id"]),
        ("/segments/seg%00x", ["path", "segment_id"]),
        ("/campaigns?label=Sale%00", ["query", "label"]),
        ("/audit?resource_id=%00", ["query", "resource_id"]),
    ]
    for path, loc in cases:
        error = _only_error(control_api.get(path, control_api.admin))

        assert error["loc"] == loc, path
        assert error["type"] == "string_nul_character", path


@pytest.mark.parametrize("value", ["2", True, 2.0, "true"])
def test_count_takes_only_json_integers(control_api: ControlApi, value: Any) -> None:
    body = push_campaign(delivery={"per_user": {"max_sends": value, "period": "calendar_day"}})

    response = control_api.post("/campaigns", control_api.admin, body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "delivery", "per_user", "max_sends"]
    assert error["msg"] == "Input should be a valid integer"


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/account", {"approval_workflow": "yes"}, ["body", "approval_workflow"]),
        (
            "/account",
            {"delivery": {"control_group_percent": "3"}},
            ["body", "delivery", "control_group_percent"],
        ),
        (
            "/account",
            {"delivery": {"frequency_caps": {"channels": {"sms": {"max_messages": True}}}}},
            ["body", "delivery", "frequency_caps", "channels", "sms", "max_messages"],
        ),
    ],
)
def test_settings_take_only_json_types(
    control_api: ControlApi, path: str, body: dict[str, Any], loc: list[Any]
) -> None:
    response = control_api.patch(path, control_api.admin, body)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


def test_segment_window_takes_only_integers(control_api: ControlApi) -> None:
    definition = {
        "type": "event",
        "event": "purchase",
        "window": {"type": "last_days", "days": "7"},
    }

    response = control_api.post("/segments/estimate", control_api.admin, {"definition": definition})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "definition"]
    assert "event.window.last_days.days: Input should be a valid integer" in error["msg"]


def test_oversized_body_rejected(control_api: ControlApi) -> None:
    body = {"delivery": {"unknown": "x" * (1024 * 1024)}}

    response = control_api.patch("/account", control_api.admin, body)

    assert response.status_code == 413
    assert "bytes allowed" in response.json()["detail"]
    assert len(response.content) < 1000


@pytest.mark.parametrize("value", ["22:00Z", "22:00+02:00", 1320, "7:00", "24:00", True])
def test_times_of_day_are_local_text(control_api: ControlApi, value: Any) -> None:
    window = {"weekdays": ["mon"], "start": value, "end": "07:00"}
    quiet = push_campaign(delivery={"quiet_hours": {"action": "defer", "windows": [window]}})
    cut_off = push_campaign(delivery={"cutoff_local_time": value})

    for body, loc in [
        (quiet, ["body", "delivery", "quiet_hours", "windows", 0, "start"]),
        (cut_off, ["body", "delivery", "cutoff_local_time"]),
    ]:
        response = control_api.post("/campaigns", control_api.admin, body)
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == loc
        assert "expected a local time of day as text, such as '22:00'" in error["msg"]


@pytest.mark.parametrize("value", [True, False])
def test_durations_reject_booleans(control_api: ControlApi, value: bool) -> None:
    inaction = {
        "type": "inaction",
        "did": {"event": "add_to_cart"},
        "did_not": {"event": "purchase"},
        "within": value,
    }
    per_user = {"max_sends": 1, "period": "rolling", "window": value}
    cases = [
        (push_campaign(when={"type": "event", "event": "signup", "delay": value}), "/campaigns"),
        (push_campaign(when=inaction), "/campaigns"),
        (push_campaign(delivery={"per_user": per_user}), "/campaigns"),
    ]
    locs = [
        ["body", "when", "event", "delay"],
        ["body", "when", "inaction", "within"],
        ["body", "delivery", "per_user", "window"],
    ]
    for (body, path), loc in zip(cases, locs, strict=True):
        response = control_api.post(path, control_api.admin, body)
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == loc
        assert "expected a duration such as 'PT1H' or a number of seconds" in error["msg"]

    caps = {"frequency_caps": {"channels": {"sms": {"min_gap": value}}}}
    response = control_api.patch("/account", control_api.admin, {"delivery": caps})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "delivery", "frequency_caps", "channels", "sms", "min_gap"]


def test_durations_take_text_and_seconds(control_api: ControlApi) -> None:
    for delay in ["PT30M", 1800]:
        body = push_campaign(when={"type": "event", "event": "signup", "delay": delay})
        response = control_api.post("/campaigns", control_api.admin, body)
        assert response.status_code == 201
        assert response.json()["when"]["delay"] == "PT30M"
