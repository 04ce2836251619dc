"""The real-time engine's decisions, pure so that the stream and the tests share them."""

from domain.engine.campaigns import LIVE_STATES, CampaignSet, LiveCampaign, compile_campaigns
from domain.engine.partition import (
    MAX_WAITING,
    NOT_SENT_EVENT,
    SENT_EVENT,
    Effects,
    EngineRules,
    PartitionEngine,
    fit_state,
    send_id_of,
)

__all__ = [
    "LIVE_STATES",
    "MAX_WAITING",
    "NOT_SENT_EVENT",
    "SENT_EVENT",
    "CampaignSet",
    "Effects",
    "EngineRules",
    "LiveCampaign",
    "PartitionEngine",
    "compile_campaigns",
    "fit_state",
    "send_id_of",
]
