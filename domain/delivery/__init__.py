"""Delivery controls of one message, as pure functions over plain state.

`decide` runs the controls in order, and each module beside it contains one control.
The stream, the API (previews, reports) and the tests share these rules.
"""

from domain.delivery.assignment import choose_variant, in_account_control_group, in_control_group
from domain.delivery.limits import overall_limit_reached, too_many_qualified
from domain.delivery.pipeline import (
    AccountRules,
    CampaignRules,
    SendCandidate,
    decide,
    record_decision,
)
from domain.delivery.state import (
    CampaignCounters,
    UserSendHistory,
    new_campaign_counters,
    new_user_history,
    prune_user_history,
    record_campaign_send,
    record_user_send,
)

__all__ = [
    "AccountRules",
    "CampaignCounters",
    "CampaignRules",
    "SendCandidate",
    "UserSendHistory",
    "choose_variant",
    "decide",
    "in_account_control_group",
    "in_control_group",
    "new_campaign_counters",
    "new_user_history",
    "overall_limit_reached",
    "prune_user_history",
    "record_campaign_send",
    "record_decision",
    "record_user_send",
    "too_many_qualified",
]
