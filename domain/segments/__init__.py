"""Audience segments on the streaming side: behaviour state and the rule evaluator. Pure."""

from domain.segments.evaluator import SegmentEvaluator
from domain.segments.state import (
    DEFAULT_HORIZON_DAYS,
    BehaviourState,
    Feature,
    apply_event,
    features_of,
    new_state,
)

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "BehaviourState",
    "Feature",
    "SegmentEvaluator",
    "apply_event",
    "features_of",
    "new_state",
]
