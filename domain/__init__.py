"""Herald's domain rules: pure logic with no I/O, shared by the API, the CLI and workers."""

from domain.errors import (
    AuthenticationFailed,
    ConflictError,
    DomainError,
    EditDiscarded,
    EditNotAllowed,
    HeraldError,
    InvalidLabel,
    InvalidTransition,
    InvalidValue,
    LabelInUse,
    NotFound,
    PermissionDenied,
    ScheduledTimePassed,
)
from domain.labels import label_key, normalise_label, split_label_batch
from domain.lifecycle import CampaignAction, CampaignState, Section, check_edit, decide_edit

__all__ = [
    "AuthenticationFailed",
    "CampaignAction",
    "CampaignState",
    "ConflictError",
    "DomainError",
    "EditDiscarded",
    "EditNotAllowed",
    "HeraldError",
    "InvalidLabel",
    "InvalidTransition",
    "InvalidValue",
    "LabelInUse",
    "NotFound",
    "PermissionDenied",
    "ScheduledTimePassed",
    "Section",
    "check_edit",
    "decide_edit",
    "label_key",
    "normalise_label",
    "split_label_batch",
]
