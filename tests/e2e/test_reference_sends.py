"""The SQL prediction of campaign sends, checked on small hand-made CSVs."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.reference_sends import predicted_sends

DATASET = Path(__file__).resolve().parents[2] / "examples" / "data" / "ecom.csv.gz"

HEADER = (
    "user_id,session_id,event,timestamp,platform,acquisition_channel,user_cohort,user_lifecycle"
)


def write_csv(
    directory: Path,
    rows: list[tuple[str, str, str] | tuple[str, str, str, str]],
    *,
    gz: bool = False,
) -> Path:
    """Write rows in the ecom CSV layout and return the file path.

    Each row is (user_id, event, timestamp), optionally followed by user_lifecycle, which
    defaults to "returning". With gz the file is gzip-compressed and named .csv.gz.
    """
    lines = [HEADER]
    for row in rows:
        user_id, event, timestamp = row[:3]
        lifecycle = row[3] if len(row) == 4 else "returning"
        lines.append(f"{user_id},sess_1,{event},{timestamp},desktop,email,2024-01,{lifecycle}")
    text = "\n".join(lines) + "\n"

    if gz:
        path = directory / "events.csv.gz"
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path = directory / "events.csv"
        path.write_text(text)
    return path


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "purchase_at",
    ["2024-03-01 10:00:00", "2024-03-01 10:30:00", "2024-03-01 11:00:00"],
    ids=["at-cart-time", "inside-window", "at-window-end"],
)
def test_cart_purchase_inside_window_cancels(tmp_path, purchase_at):
    path = write_csv(
        tmp_path,
        [("u1", "add_to_cart", "2024-03-01 10:00:00"), ("u1", "purchase", purchase_at)],
    )

    assert predicted_sends(path)["Abandoned cart"] == []


@pytest.mark.parametrize(
    "purchase_at",
    ["2024-03-01 09:59:59", "2024-03-01 11:00:01"],
    ids=["one-second-before", "one-second-after"],
)
def test_cart_purchase_outside_window_sends(tmp_path, purchase_at):
    path = write_csv(
        tmp_path,
        [("u1", "add_to_cart", "2024-03-01 10:00:00"), ("u1", "purchase", purchase_at)],
    )

    assert predicted_sends(path)["Abandoned cart"] == [("u1", utc("2024-03-01 11:00:00"))]


def test_cart_purchase_by_other_user_ignored(tmp_path):
    path = write_csv(
        tmp_path,
        [("u1", "add_to_cart", "2024-03-01 10:00:00"), ("u2", "purchase", "2024-03-01 10:30:00")],
    )

    assert predicted_sends(path)["Abandoned cart"] == [("u1", utc("2024-03-01 11:00:00"))]


def test_cart_at_end_of_data_sends(tmp_path):
    path = write_csv(
        tmp_path,
        [("u1", "home", "2024-03-01 09:00:00"), ("u1", "add_to_cart", "2024-03-01 10:00:00")],
    )

    assert predicted_sends(path)["Abandoned cart"] == [("u1", utc("2024-03-01 11:00:00"))]


def test_cart_cap_just_under_24_hours(tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("u1", "add_to_cart", "2024-03-01 10:00:00"),
            ("u1", "add_to_cart", "2024-03-02 09:59:59"),
        ],
    )

    assert predicted_sends(path)["Abandoned cart"] == [("u1", utc("2024-03-01 11:00:00"))]


def test_cart_cap_exactly_24_hours(tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("u1", "add_to_cart", "2024-03-01 10:00:00"),
            ("u1", "add_to_cart", "2024-03-02 10:00:00"),
        ],
    )

    assert predicted_sends(path)["Abandoned cart"] == [
        ("u1", utc("2024-03-01 11:00:00")),
        ("u1", utc("2024-03-02 11:00:00")),
    ]


def test_cart_cap_counts_only_sent_messages(tmp_path):
    # The 20:00 candidate is blocked, so the 24-hour window still runs from the 11:00 send
    # and the next-day 12:00 candidate (25 hours later) goes out.
    path = write_csv(
        tmp_path,
        [
            ("u1", "add_to_cart", "2024-03-01 10:00:00"),
            ("u1", "add_to_cart", "2024-03-01 19:00:00"),
            ("u1", "add_to_cart", "2024-03-02 11:00:00"),
        ],
    )

    assert predicted_sends(path)["Abandoned cart"] == [
        ("u1", utc("2024-03-01 11:00:00")),
        ("u1", utc("2024-03-02 12:00:00")),
    ]


def test_cart_cap_is_per_user(tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("u1", "add_to_cart", "2024-03-01 10:00:00"),
            ("u2", "add_to_cart", "2024-03-01 10:00:00"),
        ],
    )

    assert predicted_sends(path)["Abandoned cart"] == [
        ("u1", utc("2024-03-01 11:00:00")),
        ("u2", utc("2024-03-01 11:00:00")),
    ]


def test_cart_duplicate_rows_send_once(tmp_path):
    # Identical rows are two candidates at the same second, and the cap blocks the second.
    path = write_csv(
        tmp_path,
        [
            ("u1", "add_to_cart", "2024-03-01 10:00:00"),
            ("u1", "add_to_cart", "2024-03-01 10:00:00"),
        ],
    )

    assert predicted_sends(path)["Abandoned cart"] == [("u1", utc("2024-03-01 11:00:00"))]


def test_payment_errors_across_midnight(tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("u1", "payment_error", "2024-03-01 23:59:59"),
            ("u1", "payment_error", "2024-03-02 00:00:00"),
        ],
    )

    assert predicted_sends(path)["Payment problem"] == [
        ("u1", utc("2024-03-01 23:59:59")),
        ("u1", utc("2024-03-02 00:00:00")),
    ]


def test_payment_errors_same_day_send_first(tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("u1", "payment_error", "2024-03-01 00:00:00"),
            ("u1", "payment_error", "2024-03-01 00:00:00"),
            ("u1", "payment_error", "2024-03-01 12:00:00"),
            ("u1", "payment_error", "2024-03-01 23:59:59"),
            ("u2", "payment_error", "2024-03-01 12:00:00"),
        ],
    )

    assert predicted_sends(path)["Payment problem"] == [
        ("u1", utc("2024-03-01 00:00:00")),
        ("u2", utc("2024-03-01 12:00:00")),
    ]


def test_welcome_first_new_home_once(tmp_path):
    path = write_csv(
        tmp_path,
        [
            ("u1", "home", "2024-03-01 09:00:00", "returning"),
            ("u1", "product_view", "2024-03-01 09:30:00", "new"),
            ("u1", "home", "2024-03-01 10:00:00", "new"),
            ("u1", "home", "2024-03-01 10:00:00", "new"),
            ("u1", "home", "2024-03-05 10:00:00", "new"),
            ("u2", "home", "2024-03-01 10:00:00", "loyal"),
            ("u3", "search", "2024-03-01 10:00:00", "new"),
        ],
    )

    assert predicted_sends(path)["Welcome"] == [("u1", utc("2024-03-01 10:00:00"))]


def test_gzip_and_plain_files_agree(tmp_path):
    rows = [
        ("u1", "home", "2024-03-01 09:00:00", "new"),
        ("u1", "add_to_cart", "2024-03-01 10:00:00"),
        ("u1", "payment_error", "2024-03-01 10:05:00"),
    ]
    plain_dir = tmp_path / "plain"
    gzip_dir = tmp_path / "gzip"
    plain_dir.mkdir()
    gzip_dir.mkdir()

    plain = predicted_sends(write_csv(plain_dir, rows))
    compressed = predicted_sends(write_csv(gzip_dir, rows, gz=True))

    assert compressed == plain
    assert plain == {
        "Abandoned cart": [("u1", utc("2024-03-01 11:00:00"))],
        "Payment problem": [("u1", utc("2024-03-01 10:05:00"))],
        "Welcome": [("u1", utc("2024-03-01 09:00:00"))],
    }


def test_reference_dataset_invariants():
    sends = predicted_sends(DATASET)

    assert set(sends) == {"Abandoned cart", "Payment problem", "Welcome"}
    for campaign, campaign_sends in sends.items():
        assert campaign_sends, campaign
        assert campaign_sends == sorted(campaign_sends), campaign
        assert all(sent_at.tzinfo is UTC for _, sent_at in campaign_sends), campaign

    welcome_users = Counter(user_id for user_id, _ in sends["Welcome"])
    assert [user for user, count in welcome_users.items() if count > 1] == []

    payment_days = Counter(
        (user_id, sent_at.date()) for user_id, sent_at in sends["Payment problem"]
    )
    assert [key for key, count in payment_days.items() if count > 1] == []

    cart_sends = sends["Abandoned cart"]
    close_pairs = [
        (earlier, later)
        for earlier, later in zip(cart_sends, cart_sends[1:])
        if earlier[0] == later[0] and later[1] - earlier[1] < timedelta(hours=24)
    ]
    assert close_pairs == []
