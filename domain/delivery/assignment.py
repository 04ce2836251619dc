"""Control groups and A/B variants, assigned by a stable hash of campaign and user.

Every assignment maps (salt, campaign id, user id) through BLAKE2b to a point in
[0, 100). The same user therefore lands in the same group and variant of a campaign on
every worker, on every retry and after a restart, with no stored state. Each assignment
uses its own salt, so the control group and the variant are independent.
"""

from __future__ import annotations

from hashlib import blake2b

from schemas.campaign_message import WhatSection

__all__ = ["choose_variant", "in_account_control_group", "in_control_group", "point_of"]

_ACCOUNT_CONTROL = b"account-control"
_CONTROL = b"control"
_TEST_SHARE = b"test-share"
_VARIANT = b"variant"


def point_of(salt: bytes, campaign_id: str, user_id: str) -> int:
    """Return the user's point in [0, 100) for one kind of assignment.

    The unit separator keeps ("ab", "c") and ("a", "bc") apart.
    """
    key = f"{campaign_id}\x1f{user_id}".encode()
    digest = blake2b(key, digest_size=8, person=salt).digest()
    return (int.from_bytes(digest, "big") * 100) >> 64


def in_control_group(percent: int | None, campaign_id: str, user_id: str) -> bool:
    """Return whether the user is held out of the campaign as its control group."""
    return percent is not None and point_of(_CONTROL, campaign_id, user_id) < percent


def in_account_control_group(
    percent: int | None, user_id: str, account_id: str | None = None
) -> bool:
    """Return whether the user is in the account-wide control group.

    The point ignores the campaign, so these users are held out of every campaign of the
    account. It depends on the account, so two accounts with the same percentage hold out
    different users. Settings of no account use one point for every campaign.
    """
    return percent is not None and point_of(_ACCOUNT_CONTROL, account_id or "", user_id) < percent


def choose_variant(
    what: WhatSection, campaign_id: str, user_id: str, winner: str | None = None
) -> str | None:
    """Return the name of the variant the user gets, or None while the winner is unknown.

    With a winner selection, users inside the test share get a variant by weight and
    the rest get `winner`, which the stream sets once the test has been decided.
    """
    selection = what.winner_selection
    if selection is None and len(what.variants) == 1:
        # The loop below would pick it for every point, so the hash is not needed.
        return what.variants[0].name
    outside_test = (
        selection is not None
        and point_of(_TEST_SHARE, campaign_id, user_id) >= selection.test_percent
    )
    if outside_test:
        return winner
    point = point_of(_VARIANT, campaign_id, user_id)
    upper = 0
    for variant in what.variants:
        upper += variant.weight
        if point < upper:
            return variant.name
    return what.variants[-1].name
