"""Drive a campaign through the API into each lifecycle situation of the edit rules.

A situation is a state plus how far the campaign has got: `pending_first` is pending
approval before its first run, `pending_next` is pending between runs, `pending_live` is
pending while live; the same for `rejected_…`. Timing `after` moves the clock past the
scheduled time (first run) or the next run time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.api.control_support import PUSH_WHAT, ControlApi

FIRST_RUN = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
NEXT_RUN = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
RECURRING_WHEN = {
    "type": "recurring",
    "frequency": "daily",
    "local_time": "09:00:00",
    "start_date": "2026-03-03",
}

CHANGED_WHAT = copy.deepcopy(PUSH_WHAT)
CHANGED_WHAT["variants"][0]["message"]["body"] = "Sale ends tonight"
# The edit that sends a started campaign back for approval; differs from CHANGED_WHAT.
REVIEW_WHAT = copy.deepcopy(PUSH_WHAT)
REVIEW_WHAT["variants"][0]["message"]["title"] = "Hello again {{ profile.Name }}"

# One edit per section; each changes only that section.
SECTION_EDITS: dict[str, dict[str, Any]] = {
    "name": {"name": "Renamed sale"},
    "labels": {"labels": ["Other"]},
    "who": {
        "who": {
            "type": "inline_segment",
            "definition": {"type": "trait", "trait": "country", "op": "eq", "value": "DE"},
        }
    },
    "what": {"what": CHANGED_WHAT},
    "when": {"when": {**RECURRING_WHEN, "start_date": "2026-03-10", "local_time": "10:00:00"}},
}


@dataclass
class Situation:
    campaign_id: str
    creator: str
    approver: str


def reach(api: ControlApi, situation: str, timing: str, workflow: bool) -> Situation:
    """Create a recurring campaign and bring it to `situation` with `timing`."""
    creator, approver = api.user("creator"), api.user("approver")
    api.post("/labels", api.admin, {"names": ["Base", "Other"]})
    campaign = api.create_campaign(creator, labels=["Base"], when=RECURRING_WHEN)
    found = Situation(campaign["id"], creator, approver)
    api.set_workflow(workflow)
    _STEPS[situation](api, found)
    if timing == "after":
        api.clock.set(datetime(2026, 3, 4, 10, 0, tzinfo=UTC))
    return found


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _publish(api: ControlApi, s: Situation) -> None:
    if api.get("/account", api.admin).json()["approval_workflow"]:
        _ok(api.post(f"/campaigns/{s.campaign_id}/send-for-approval", s.creator))
        _ok(api.post(f"/campaigns/{s.campaign_id}/approve", s.approver))
    else:
        _ok(api.post(f"/campaigns/{s.campaign_id}/publish", s.creator))


def _draft(api: ControlApi, s: Situation) -> None:
    return None


def _scheduled(api: ControlApi, s: Situation) -> None:
    _publish(api, s)
    assert api.get(f"/campaigns/{s.campaign_id}", s.creator).json()["state"] == "scheduled"


def _running(api: ControlApi, s: Situation) -> None:
    _scheduled(api, s)
    api.clock.set(FIRST_RUN)
    _ok(api.post(f"/campaigns/{s.campaign_id}/runs/start", api.admin))


def _awaiting(api: ControlApi, s: Situation) -> None:
    _running(api, s)
    api.clock.set(datetime(2026, 3, 3, 9, 30, tzinfo=UTC))
    body = {"next_run_at": NEXT_RUN.isoformat()}
    _ok(api.post(f"/campaigns/{s.campaign_id}/runs/finish", api.admin, body))


def _to_pending(api: ControlApi, s: Situation) -> None:
    _ok(api.patch(f"/campaigns/{s.campaign_id}", s.creator, {"what": REVIEW_WHAT}))


def _pending_first(api: ControlApi, s: Situation) -> None:
    _ok(api.post(f"/campaigns/{s.campaign_id}/send-for-approval", s.creator))


def _pending_next(api: ControlApi, s: Situation) -> None:
    _awaiting(api, s)
    _to_pending(api, s)


def _pending_live(api: ControlApi, s: Situation) -> None:
    _running(api, s)
    _to_pending(api, s)


def _reject(api: ControlApi, s: Situation) -> None:
    _ok(api.post(f"/campaigns/{s.campaign_id}/reject", s.approver, {"comment": "Tone it down"}))


def _stopped(api: ControlApi, s: Situation) -> None:
    _running(api, s)
    _ok(api.post(f"/campaigns/{s.campaign_id}/stop", s.creator))


def _completed(api: ControlApi, s: Situation) -> None:
    _running(api, s)
    _ok(api.post(f"/campaigns/{s.campaign_id}/runs/finish", api.admin, {}))


_STEPS = {
    "draft": _draft,
    "scheduled": _scheduled,
    "running": _running,
    "awaiting_next_run": _awaiting,
    "pending_first": _pending_first,
    "pending_next": _pending_next,
    "pending_live": _pending_live,
    "rejected_first": lambda api, s: (_pending_first(api, s), _reject(api, s)),
    "rejected_next": lambda api, s: (_pending_next(api, s), _reject(api, s)),
    "rejected_live": lambda api, s: (_pending_live(api, s), _reject(api, s)),
    "stopped": _stopped,
    "completed": _completed,
}
