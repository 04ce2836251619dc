from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from control.outbox import MAX_CAMPAIGN_RECORD_BYTES
from tests.api.control_support import ControlApi, push_campaign


def _locs(response: Any) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [item["loc"] for item in response.json()["detail"]]


# Validation ------------------------------------------------------------------------------


def test_missing_title_path(control_api: ControlApi) -> None:
    body = push_campaign()
    del body["what"]["variants"][0]["message"]["title"]

    locs = _locs(control_api.post("/campaigns", control_api.admin, body))

    assert ["body", "what", "variants", 0, "message", "push", "title"] in locs


def test_several_invalid_fields(control_api: ControlApi) -> None:
    body = push_campaign(channel="fax", when={"type": "at", "at": "2026-03-03T08:00:00"})
    body["delivery"] = {"control_group_percent": 1}

    locs = _locs(control_api.post("/campaigns", control_api.admin, body))

    assert ["body", "channel"] in locs
    assert ["body", "when", "at", "at"] in locs
    assert ["body", "delivery", "control_group_percent"] in locs


def test_message_channel_mismatch(control_api: ControlApi) -> None:
    response = control_api.post("/campaigns", control_api.admin, push_campaign(channel="sms"))

    assert response.status_code == 422
    assert "has a 'push' message but the campaign's channel is 'sms'" in response.text


def test_bad_placeholder_syntax(control_api: ControlApi) -> None:
    body = push_campaign()
    body["what"]["variants"][0]["message"]["body"] = "Hi {{ profile.Name"

    locs = _locs(control_api.post("/campaigns", control_api.admin, body))

    assert ["body", "what", "variants", 0, "message", "push", "body"] in locs


def test_variant_weights_sum(control_api: ControlApi) -> None:
    body = push_campaign()
    variant = body["what"]["variants"][0]
    body["what"]["variants"] = [
        {**variant, "name": "A", "weight": 50},
        {**variant, "name": "B", "weight": 30},
    ]

    response = control_api.post("/campaigns", control_api.admin, body)

    assert response.status_code == 422
    assert "variant weights must add up to 100, got 80" in response.text


def test_four_variants_rejected(control_api: ControlApi) -> None:
    body = push_campaign()
    variant = body["what"]["variants"][0]
    body["what"]["variants"] = [{**variant, "name": n, "weight": 25} for n in "ABCD"]

    assert ["body", "what", "variants"] in _locs(
        control_api.post("/campaigns", control_api.admin, body)
    )


def test_inline_segment_must_be_object(control_api: ControlApi) -> None:
    body = push_campaign(who={"type": "inline_segment", "definition": ["not", "an", "object"]})

    assert ["body", "who", "inline_segment", "definition"] in _locs(
        control_api.post("/campaigns", control_api.admin, body)
    )


def test_inline_segment_size_bound(control_api: ControlApi) -> None:
    body = push_campaign(who={"type": "inline_segment", "definition": {"x": "y" * 70_000}})

    response = control_api.post("/campaigns", control_api.admin, body)

    assert ["body", "who", "inline_segment", "definition"] in _locs(response)
    assert "at most 65536 are allowed" in response.text


def test_unknown_label_path(control_api: ControlApi) -> None:
    response = control_api.post("/campaigns", control_api.admin, push_campaign(labels=["Ghost"]))

    assert _locs(response) == [["body", "labels", 0]]
    assert "label 'Ghost' does not exist" in response.text


def test_unknown_segment_path(control_api: ControlApi) -> None:
    body = push_campaign(who={"type": "saved_segment", "segment_id": "seg_missing"})

    assert _locs(control_api.post("/campaigns", control_api.admin, body)) == [
        ["body", "who", "segment_id"]
    ]


def test_conversion_window_bounds(control_api: ControlApi) -> None:
    goal = {"event": "Charged", "window": "PT30S"}
    body = push_campaign(delivery={"conversion_goal": goal})

    assert ["body", "delivery", "conversion_goal", "window"] in _locs(
        control_api.post("/campaigns", control_api.admin, body)
    )


def test_weekly_needs_weekdays(control_api: ControlApi) -> None:
    when = {
        "type": "recurring",
        "frequency": "weekly",
        "local_time": "09:00",
        "start_date": "2026-03-03",
    }

    response = control_api.post("/campaigns", control_api.admin, push_campaign(when=when))

    assert ["body", "when", "recurring"] in _locs(response)
    assert "a weekly schedule needs `weekdays`" in response.text


def test_edit_validates_merged(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)

    response = control_api.patch(
        f"/campaigns/{campaign['id']}", control_api.admin, {"channel": "email"}
    )

    assert _locs(response) == [["body"]]
    assert "has a 'push' message but the campaign's channel is 'email'" in response.text


def test_edit_invalid_field_path(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)
    when = {
        "type": "recurring",
        "frequency": "daily",
        "local_time": "25:00",
        "start_date": "2026-03-03",
    }

    response = control_api.patch(f"/campaigns/{campaign['id']}", control_api.admin, {"when": when})

    assert ["body", "when", "recurring", "local_time"] in _locs(response)


def test_account_timezone_validated(control_api: ControlApi) -> None:
    response = control_api.patch("/account", control_api.admin, {"timezone": "Mars/Olympus"})

    assert _locs(response) == [["body", "timezone"]]
    assert "time zone 'Mars/Olympus' is unknown" in response.text


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (
            "email",
            {
                "subject": "Hi",
                "sender": {"address": "a@b.example"},
                "html_body": "<p>x</p>",
                "text_body": "x",
            },
        ),
        ("sms", {"text": "Your code"}),
        ("webhook", {"url": "https://hooks.example/x", "payload": {"id": "{{ profile.id }}"}}),
        ("in_app", {"layout": "cover", "title": "Hi", "body": "x"}),
        ("app_inbox", {"title": "Hi", "body": "x"}),
        ("web_push", {"title": "Hi", "body": "x", "url": "https://shop.example"}),
        ("web_popup", {"title": "Hi", "body": "x"}),
        ("web_exit_intent", {"title": "Wait", "body": "x"}),
        ("native_display", {"key_values": {"banner": "spring"}}),
        ("facebook_audience", {"ad_account_id": "act_1", "audience_name": "Churn risk"}),
        ("google_ads_audience", {"customer_id": "123", "audience_name": "Churn risk"}),
    ],
)
def test_every_channel_accepted(
    control_api: ControlApi, channel: str, message: dict[str, Any]
) -> None:
    what = {"variants": [{"message": {"channel": channel, **message}}]}

    response = control_api.post(
        "/campaigns", control_api.admin, push_campaign(channel=channel, what=what)
    )

    assert response.status_code == 201, response.text


def test_email_required_fields(control_api: ControlApi) -> None:
    what = {"variants": [{"message": {"channel": "email", "subject": "Hi"}}]}

    locs = _locs(
        control_api.post("/campaigns", control_api.admin, push_campaign(channel="email", what=what))
    )

    for field in ("sender", "html_body", "text_body"):
        assert ["body", "what", "variants", 0, "message", "email", field] in locs


# Authentication and roles ----------------------------------------------------------------


def test_missing_token_401(control_api: ControlApi) -> None:
    response = control_api.client.get("/campaigns")

    assert response.status_code == 401
    assert response.json()["detail"] == "missing API token; send `Authorization: Bearer <token>`"


def test_wrong_token_401(control_api: ControlApi) -> None:
    response = control_api.get("/campaigns", "hrd_not-a-token")

    assert response.status_code == 401
    assert response.json()["detail"] == "the API token is invalid or revoked"


def test_write_key_is_not_a_token(control_api: ControlApi) -> None:
    assert control_api.get("/campaigns", "herald-dev-write-key").status_code == 401


def test_analyst_cannot_change(control_api: ControlApi) -> None:
    analyst = control_api.user("analyst")
    campaign = control_api.create_campaign(control_api.admin)
    path = f"/campaigns/{campaign['id']}"

    assert control_api.get(path, analyst).status_code == 200
    assert control_api.post("/campaigns", analyst, push_campaign()).status_code == 403
    assert control_api.patch(path, analyst, {"name": "x"}).status_code == 403
    assert control_api.post(f"{path}/publish", analyst).status_code == 403
    assert control_api.post(f"{path}/stop", analyst).status_code == 403
    assert control_api.post(f"{path}/preview", analyst, {"profile": {}}).status_code == 200


def test_creator_cannot_manage_users(control_api: ControlApi) -> None:
    creator = control_api.user("creator")

    response = control_api.post("/users", creator, {"email": "x@shop.test", "role": "admin"})

    assert response.status_code == 403
    assert control_api.patch("/account", creator, {"approval_workflow": True}).status_code == 403


def test_accounts_are_isolated(control_api: ControlApi) -> None:
    from control.accounts import bootstrap_account

    campaign = control_api.create_campaign(control_api.admin)
    with control_api.store.session() as session:
        _user, other = bootstrap_account(
            session, "Other shop", "o@other.test", control_api.clock.now()
        )

    response = control_api.get(f"/campaigns/{campaign['id']}", other)

    assert response.status_code == 404


# Approval workflow -----------------------------------------------------------------------


def test_approver_cannot_approve_own(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    approver = control_api.user("approver")
    campaign = control_api.create_campaign(approver)
    path = f"/campaigns/{campaign['id']}"
    control_api.post(f"{path}/send-for-approval", approver)

    response = control_api.post(f"{path}/approve", approver)

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "you created campaign 'Spring sale', so another approver must approve it"
    )


def test_creator_cannot_publish_with_workflow(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator = control_api.user("creator")
    campaign = control_api.create_campaign(creator)

    response = control_api.post(f"/campaigns/{campaign['id']}/publish", creator)

    assert response.status_code == 403
    assert "send the campaign for approval instead" in response.json()["detail"]


def test_creator_cannot_approve(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator, other = control_api.user("creator"), control_api.user("creator")
    campaign = control_api.create_campaign(creator)
    control_api.post(f"/campaigns/{campaign['id']}/send-for-approval", creator)

    assert control_api.post(f"/campaigns/{campaign['id']}/approve", other).status_code == 403


def test_approve_publishes(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator, approver = control_api.user("creator"), control_api.user("approver")
    campaign = control_api.create_campaign(creator)
    path = f"/campaigns/{campaign['id']}"

    assert (
        control_api.post(f"{path}/send-for-approval", creator).json()["state"] == "pending_approval"
    )
    response = control_api.post(f"{path}/approve", approver)

    assert response.status_code == 200
    assert response.json()["state"] == "scheduled"


def test_reject_needs_comment(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator, approver = control_api.user("creator"), control_api.user("approver")
    campaign = control_api.create_campaign(creator)
    path = f"/campaigns/{campaign['id']}"
    control_api.post(f"{path}/send-for-approval", creator)

    assert _locs(control_api.post(f"{path}/reject", approver, {"comment": ""})) == [
        ["body", "comment"]
    ]
    response = control_api.post(f"{path}/reject", approver, {"comment": "Wrong discount"})

    assert response.json()["state"] == "rejected"
    assert response.json()["rejection_comment"] == "Wrong discount"
    entry = control_api.get(f"{path}/audit", creator).json()[-1]
    assert (entry["action"], entry["comment"], entry["to_state"]) == (
        "reject",
        "Wrong discount",
        "rejected",
    )


def test_send_for_approval_without_workflow(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)

    response = control_api.post(f"/campaigns/{campaign['id']}/send-for-approval", control_api.admin)

    assert response.status_code == 409
    assert "the approval workflow is off" in response.json()["detail"]


def test_approve_after_time_needs_new_time(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator, approver = control_api.user("creator"), control_api.user("approver")
    campaign = control_api.create_campaign(creator)
    path = f"/campaigns/{campaign['id']}"
    control_api.post(f"{path}/send-for-approval", creator)
    control_api.clock.advance(timedelta(days=2))

    refused = control_api.post(f"{path}/approve", approver)
    moved = control_api.post(f"{path}/approve", approver, {"at": "2026-03-10T08:00:00Z"})

    assert refused.status_code == 409
    assert refused.json()["code"] == "scheduled_time_passed"
    assert refused.json()["detail"] == (
        "campaign 'Spring sale' was scheduled for 2026-03-03T08:00:00+00:00, which has passed; "
        "give a new time (`at`, or a new `when`) or choose to run it now (`run_now`)"
    )
    assert moved.status_code == 200
    assert moved.json()["state"] == "scheduled"
    assert moved.json()["when"]["at"] == "2026-03-10T08:00:00Z"


def test_approve_after_time_run_now(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator, approver = control_api.user("creator"), control_api.user("approver")
    campaign = control_api.create_campaign(creator)
    path = f"/campaigns/{campaign['id']}"
    control_api.post(f"{path}/send-for-approval", creator)
    control_api.clock.advance(timedelta(days=2))

    response = control_api.post(f"{path}/approve", approver, {"run_now": True})

    assert response.status_code == 200
    assert response.json()["state"] == "running"
    assert response.json()["when"]["type"] == "now"


def test_admin_acts_as_approver(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator = control_api.user("creator")
    campaign = control_api.create_campaign(creator)
    control_api.post(f"/campaigns/{campaign['id']}/send-for-approval", creator)

    response = control_api.post(f"/campaigns/{campaign['id']}/approve", control_api.admin)

    assert response.json()["state"] == "scheduled"


# Other actions ---------------------------------------------------------------------------


def test_pause_rejected(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)
    path = f"/campaigns/{campaign['id']}"
    control_api.post(f"{path}/publish", control_api.admin)

    response = control_api.post(f"{path}/pause", control_api.admin)

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "campaign 'Spring sale' is scheduled; campaigns cannot be paused, and a published "
        "campaign can only be stopped"
    )


def test_publish_past_time(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(
        control_api.admin, when={"type": "at", "at": "2026-03-01T08:00:00Z"}
    )

    response = control_api.post(f"/campaigns/{campaign['id']}/publish", control_api.admin)

    assert response.status_code == 409
    assert response.json()["code"] == "scheduled_time_passed"


def test_publish_now_runs(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin, when={"type": "now"})

    response = control_api.post(f"/campaigns/{campaign['id']}/publish", control_api.admin)

    assert response.json()["state"] == "running"


def test_publish_trigger_runs(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(
        control_api.admin, when={"type": "event", "event": "home"}
    )

    response = control_api.post(f"/campaigns/{campaign['id']}/publish", control_api.admin)

    assert response.json()["state"] == "running"


def test_stop_then_no_restart(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(
        control_api.admin, when={"type": "event", "event": "home"}
    )
    path = f"/campaigns/{campaign['id']}"
    control_api.post(f"{path}/publish", control_api.admin)

    assert control_api.post(f"{path}/stop", control_api.admin).json()["state"] == "stopped"
    again = control_api.post(f"{path}/publish", control_api.admin)
    assert again.status_code == 409
    assert "while it is stopped" in again.json()["detail"]


def test_stop_draft_409(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)

    response = control_api.post(f"/campaigns/{campaign['id']}/stop", control_api.admin)

    assert response.status_code == 409
    assert "was never published" in response.json()["detail"]


def test_duplicate_makes_draft(control_api: ControlApi) -> None:
    control_api.post("/labels", control_api.admin, {"names": ["Sale"]})
    creator = control_api.user("creator")
    campaign = control_api.create_campaign(control_api.admin, labels=["Sale"])
    control_api.post(f"/campaigns/{campaign['id']}/publish", control_api.admin)

    response = control_api.post(f"/campaigns/{campaign['id']}/duplicate", creator)

    copy = response.json()
    assert response.status_code == 201
    assert (copy["name"], copy["state"], copy["labels"]) == (
        "Copy of Spring sale",
        "draft",
        ["Sale"],
    )
    assert copy["what"] == campaign["what"]
    assert copy["id"] != campaign["id"]


def test_archive_hides(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)

    archived = control_api.post(f"/campaigns/{campaign['id']}/archive", control_api.admin)

    assert archived.json()["archived"] is True
    assert control_api.get("/campaigns", control_api.admin).json() == []
    listed = control_api.get("/campaigns?include_archived=true", control_api.admin).json()
    assert [c["id"] for c in listed] == [campaign["id"]]


def test_archive_running_409(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin, when={"type": "now"})
    control_api.post(f"/campaigns/{campaign['id']}/publish", control_api.admin)

    response = control_api.post(f"/campaigns/{campaign['id']}/archive", control_api.admin)

    assert response.status_code == 409


def test_list_filters(control_api: ControlApi) -> None:
    control_api.post("/labels", control_api.admin, {"names": ["Sale"]})
    sms_what = {"variants": [{"message": {"channel": "sms", "text": "x"}}]}
    first = control_api.create_campaign(control_api.admin, labels=["Sale"])
    second = control_api.create_campaign(
        control_api.admin, name="Texts", channel="sms", what=sms_what
    )
    control_api.post(f"/campaigns/{second['id']}/publish", control_api.admin)

    def ids(query: str) -> list[str]:
        return [c["id"] for c in control_api.get(f"/campaigns?{query}", control_api.admin).json()]

    assert ids("label=sale") == [first["id"]]
    assert ids("channel=sms") == [second["id"]]
    assert ids("state=scheduled") == [second["id"]]
    assert ids("state=draft") == [first["id"]]


def test_preview_renders_profile(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)
    path = f"/campaigns/{campaign['id']}/preview"

    named = control_api.post(path, control_api.admin, {"profile": {"Name": "Ada"}}).json()
    unnamed = control_api.post(path, control_api.admin, {"profile": {}}).json()

    assert named["variants"]["A"]["title"] == "Hello Ada"
    assert unnamed["variants"]["A"]["title"] == "Hello there"


def test_preview_missing_value(control_api: ControlApi) -> None:
    body = push_campaign()
    body["what"]["variants"][0]["message"]["body"] = "Your code {{ profile.code }}"
    campaign = control_api.post("/campaigns", control_api.admin, body).json()

    response = control_api.post(
        f"/campaigns/{campaign['id']}/preview", control_api.admin, {"profile": {}}
    )

    assert _locs(response) == [["body", "what", "variants", 0, "message", "body"]]
    assert "'dict object' has no attribute 'code'" in response.text


def test_preview_sandboxed(control_api: ControlApi) -> None:
    body = push_campaign()
    body["what"]["variants"][0]["message"]["body"] = (
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    campaign = control_api.post("/campaigns", control_api.admin, body).json()

    response = control_api.post(
        f"/campaigns/{campaign['id']}/preview", control_api.admin, {"profile": {}}
    )

    assert _locs(response) == [["body", "what", "variants", 0, "message", "body"]]
    assert (
        "access to attribute '__class__' of 'str' object is unsafe"
        in response.json()["detail"][0]["msg"]
    )


def test_edit_same_values_no_change(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)
    resend = {
        k: campaign[k] for k in ("name", "channel", "labels", "who", "what", "when", "delivery")
    }

    response = control_api.patch(f"/campaigns/{campaign['id']}", control_api.admin, resend)

    assert response.json()["version"] == campaign["version"]


def test_audit_records_transitions(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(
        control_api.admin, when={"type": "event", "event": "home"}
    )
    path = f"/campaigns/{campaign['id']}"
    control_api.patch(path, control_api.admin, {"name": "Home visit"})
    control_api.post(f"{path}/publish", control_api.admin)
    control_api.post(f"{path}/stop", control_api.admin)

    entries = control_api.get(f"{path}/audit", control_api.admin).json()

    assert [e["action"] for e in entries] == ["create", "edit", "publish", "stop"]
    assert entries[1]["changes"] == {"name": {"from": "Spring sale", "to": "Home visit"}}
    assert [(e["from_state"], e["to_state"]) for e in entries[2:]] == [
        ("draft", "running"),
        ("running", "stopped"),
    ]
    everything = control_api.get(f"/audit?resource_id={campaign['id']}", control_api.admin).json()
    assert everything == entries


def test_openapi_lists_routes(control_api: ControlApi) -> None:
    paths = control_api.client.get("/openapi.json").json()["paths"]

    for path in ("/campaigns", "/campaigns/{campaign_id}/approve", "/labels", "/users", "/account"):
        assert path in paths


def test_concurrent_edit_loses_with_409(control_api: ControlApi) -> None:
    """Two writers that read the same version: the second commit is refused, not merged."""
    from sqlalchemy.orm.exc import StaleDataError

    from control.models import Campaign

    campaign = control_api.create_campaign(control_api.admin)
    with control_api.store.session() as first, control_api.store.session() as second:
        mine = first.get(Campaign, campaign["id"])
        theirs = second.get(Campaign, campaign["id"])
        mine.name, mine.version = "Mine", mine.version + 1
        theirs.name, theirs.version = "Theirs", theirs.version + 1
        first.commit()
        with pytest.raises(StaleDataError):
            second.commit()

    shown = control_api.get(f"/campaigns/{campaign['id']}", control_api.admin).json()
    assert shown["name"] == "Mine"
    assert shown["version"] == campaign["version"] + 1


def test_archived_campaign_cannot_change(control_api: ControlApi) -> None:
    campaign = control_api.create_campaign(control_api.admin)
    assert (
        control_api.post(f"/campaigns/{campaign['id']}/archive", control_api.admin).status_code
        == 200
    )

    edit = control_api.patch(f"/campaigns/{campaign['id']}", control_api.admin, {"name": "Again"})
    publish = control_api.post(f"/campaigns/{campaign['id']}/publish", control_api.admin)
    copy = control_api.post(f"/campaigns/{campaign['id']}/duplicate", control_api.admin)

    message = "campaign 'Spring sale' is archived and cannot change; duplicate it to reuse it"
    assert edit.status_code == 409
    assert edit.json()["detail"] == message
    assert publish.status_code == 409
    assert publish.json()["detail"] == message
    assert copy.status_code == 201


def test_stop_while_edit_awaits_approval(control_api: ControlApi) -> None:
    control_api.set_workflow(True)
    creator, approver = control_api.user("creator"), control_api.user("approver")
    campaign = control_api.create_campaign(creator)
    control_api.post(f"/campaigns/{campaign['id']}/send-for-approval", creator)
    approved = control_api.post(f"/campaigns/{campaign['id']}/approve", approver)
    assert approved.json()["state"] == "scheduled"

    edited = control_api.patch(f"/campaigns/{campaign['id']}", creator, {"name": "Renamed"})
    assert edited.json()["state"] == "pending_approval"
    stopped = control_api.post(f"/campaigns/{campaign['id']}/stop", approver)

    assert stopped.status_code == 200
    assert stopped.json()["state"] == "stopped"


def test_publish_after_end_rejected(control_api: ControlApi) -> None:
    body = {"type": "event", "event": "home", "end_at": "2026-03-01T00:00:00Z"}
    campaign = control_api.create_campaign(control_api.admin, when=body)

    response = control_api.post(f"/campaigns/{campaign['id']}/publish", control_api.admin)

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "campaign 'Spring sale' ends at 2026-03-01T00:00:00+00:00, which has passed, so it "
        "could never send; give it a later `end_at`"
    )


def test_at_after_end_rejected(control_api: ControlApi) -> None:
    when = {"type": "at", "at": "2026-06-01T00:00:00Z", "end_at": "2026-05-01T00:00:00Z"}
    response = control_api.post("/campaigns", control_api.admin, push_campaign(when=when))

    assert response.status_code == 422
    assert "is not before `end_at`" in response.json()["detail"][0]["msg"]


def _email_campaign(html_bytes: int, labels: list[str] | None = None) -> dict[str, Any]:
    message = {
        "channel": "email",
        "subject": "Hi",
        "sender": {"address": "shop@shop.example"},
        "html_body": "<p>" + "x" * html_bytes + "</p>",
        "text_body": "x",
    }
    variants = {"variants": [{"name": "A", "weight": 100, "message": message}]}
    return push_campaign(channel="email", what=variants, labels=labels or [])


def test_campaign_too_large_for_feed(control_api: ControlApi) -> None:
    # A feed record the broker rejects would stop the change feed of every account.
    fits = control_api.post("/campaigns", control_api.admin, _email_campaign(300 * 1024))
    too_large = control_api.post("/campaigns", control_api.admin, _email_campaign(400 * 1024))
    grown = control_api.patch(
        f"/campaigns/{fits.json()['id']}",
        control_api.admin,
        {"what": _email_campaign(400 * 1024)["what"]},
    )
    published = control_api.post(f"/campaigns/{fits.json()['id']}/publish", control_api.admin, {})

    assert fits.status_code == 201, fits.text
    assert too_large.status_code == 422
    assert "as workers receive it once published" in too_large.text
    assert grown.status_code == 422
    assert published.status_code == 200, published.text
    assert control_api.get("/campaigns", control_api.admin).json()[0]["version"] == 2


def test_oversized_campaign_still_stops(control_api: ControlApi) -> None:
    names = [f"l{n}" for n in range(40)]
    created = control_api.post("/labels", control_api.admin, {"names": names}).json()["created"]
    # The 422 gives the size of a campaign over the limit, from which one just under it
    # follows: each character of the body adds two bytes, one to the draft and one to the
    # published copy.
    probe = control_api.post("/campaigns", control_api.admin, _email_campaign(500_000, names))
    size = int(re.search(r"would take (\d+) bytes", probe.text).group(1))  # type: ignore[union-attr]
    html_bytes = 500_000 - (size - MAX_CAMPAIGN_RECORD_BYTES) // 2 - 500
    campaign = control_api.post("/campaigns", control_api.admin, _email_campaign(html_bytes, names))
    campaign_id = campaign.json()["id"]
    published = control_api.post(f"/campaigns/{campaign_id}/publish", control_api.admin, {})
    # Longer label names make the published campaign's record larger than the limit.
    for label in created:
        renamed = control_api.patch(
            f"/labels/{label['id']}", control_api.admin, {"name": label["name"] + "x" * 60}
        )
        assert renamed.status_code == 200, renamed.text

    stopped = control_api.post(f"/campaigns/{campaign_id}/stop", control_api.admin)

    assert campaign.status_code == 201, campaign.text
    assert published.status_code == 200, published.text
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped"
