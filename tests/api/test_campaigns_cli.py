"""The CLI against a real uvicorn server on loopback, loading the example campaigns."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from typer.testing import CliRunner

from api.main import create_app
from herald.cli import app as cli
from herald.config import HeraldSettings
from tests.api.control_support import database_url

EXAMPLES = Path(__file__).parents[2] / "examples" / "campaigns"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Serve the API with uvicorn on 127.0.0.1; return the CLI's environment for it."""
    db_url = database_url(tmp_path)
    app = create_app(HeraldSettings(control_db_url=db_url, control_feed=False))
    port = _free_port()
    # Lifespan off: the ingest producer it starts would wait for a Kafka broker.
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield {
        "HERALD_API_URL": f"http://127.0.0.1:{port}",
        "HERALD_CONTROL_DB_URL": db_url,
        "HERALD_CONTROL_FEED": "false",
    }
    server.should_exit = True
    thread.join(timeout=10)
    app.state.control_store.close()


def _admin_email() -> str:
    # The PostgreSQL job shares one database between tests, and an email bootstraps once.
    return f"admin-{uuid.uuid4().hex[:12]}@shop.test"


def _run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _load_examples(live_api: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    token = _run(live_api, "users", "bootstrap", "--email", _admin_email()).strip()
    env = {**live_api, "HERALD_TOKEN": token}
    for name in ("abandoned_cart", "payment_problem", "welcome"):
        _run(
            env,
            "campaigns",
            "create",
            str(EXAMPLES / f"{name}.yaml"),
            "--create-labels",
            "--publish",
        )
    response = httpx.get(
        f"{live_api['HERALD_API_URL']}/campaigns", headers={"Authorization": f"Bearer {token}"}
    )
    return env, {c["name"]: c for c in response.json()}


def test_examples_load(live_api: dict[str, str]) -> None:
    env, campaigns = _load_examples(live_api)

    assert sorted(campaigns) == ["Abandoned cart", "Payment problem", "Welcome"]
    for campaign in campaigns.values():
        assert campaign["state"] == "running"
        assert campaign["when"]["timezone"] == "account"
        assert campaign["delivery"]["quiet_hours"] is None
        assert campaign["delivery"]["control_group_percent"] is None
        assert campaign["delivery"]["throttle"] is None
        assert campaign["who"] == {"type": "all_users"}
    account = httpx.get(
        f"{env['HERALD_API_URL']}/account",
        headers={"Authorization": f"Bearer {env['HERALD_TOKEN']}"},
    ).json()
    assert account["timezone"] == "UTC"


def test_abandoned_cart_semantics(live_api: dict[str, str]) -> None:
    _env, campaigns = _load_examples(live_api)
    cart = campaigns["Abandoned cart"]

    assert (cart["channel"], cart["labels"]) == ("push", ["Cart Recovery"])
    assert cart["when"]["type"] == "inaction"
    assert cart["when"]["did"] == {"event": "add_to_cart", "property_filters": []}
    assert cart["when"]["did_not"] == {"event": "purchase", "property_filters": []}
    assert cart["when"]["within"] == "PT1H"
    assert cart["delivery"]["per_user"] == {"max_sends": 1, "period": "rolling", "window": "P1D"}


def test_payment_problem_semantics(live_api: dict[str, str]) -> None:
    _env, campaigns = _load_examples(live_api)
    payment = campaigns["Payment problem"]

    assert (payment["channel"], payment["labels"]) == ("sms", ["Support"])
    assert payment["when"]["type"] == "event"
    assert payment["when"]["event"] == "payment_error"
    assert payment["when"]["delay"] == "PT0S"
    assert payment["when"]["property_filters"] == payment["when"]["profile_filters"] == []
    assert payment["delivery"]["per_user"] == {
        "max_sends": 1,
        "period": "calendar_day",
        "window": None,
    }


def test_welcome_semantics(live_api: dict[str, str]) -> None:
    _env, campaigns = _load_examples(live_api)
    welcome = campaigns["Welcome"]

    assert (welcome["channel"], welcome["labels"]) == ("email", ["Onboarding"])
    assert welcome["when"]["event"] == "home"
    assert welcome["when"]["delay"] == "PT0S"
    assert welcome["when"]["profile_filters"] == [
        {"property": "user_lifecycle", "op": "eq", "value": "new"}
    ]
    assert welcome["delivery"]["per_user"] == {"max_sends": 1, "period": "ever", "window": None}


def test_cli_reports_api_errors(live_api: dict[str, str]) -> None:
    token = _run(live_api, "users", "bootstrap", "--email", _admin_email()).strip()
    env = {**live_api, "HERALD_TOKEN": token}

    labels = CliRunner().invoke(cli, ["labels", "create", "Sale!", "Spring"], env=env)
    missing = CliRunner().invoke(
        cli, ["campaigns", "create", str(EXAMPLES / "welcome.yaml")], env=env
    )

    assert labels.exit_code == 1
    assert "created Spring" in labels.stdout
    assert "rejected: label 'Sale!' contains '!', which labels may not contain" in labels.stderr
    assert missing.exit_code == 1
    assert "error: 422 labels.0: label 'Onboarding' does not exist" in missing.stderr


def test_cli_sets_and_clears_account_delivery(live_api: dict[str, str], tmp_path: Path) -> None:
    token = _run(live_api, "users", "bootstrap", "--email", _admin_email()).strip()
    env = {**live_api, "HERALD_TOKEN": token}
    settings = tmp_path / "delivery.yaml"
    settings.write_text(
        "frequency_caps:\n  channels:\n    sms: {max_messages: 1, days: 1}\n"
        "control_group_percent: 2\n"
    )
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("control_group_percent: 9\n")

    saved = orjson.loads(_run(env, "users", "delivery", str(settings)))
    rejected = CliRunner().invoke(cli, ["users", "delivery", str(invalid)], env=env)
    neither = CliRunner().invoke(cli, ["users", "delivery"], env=env)
    both = CliRunner().invoke(cli, ["users", "delivery", str(settings), "--clear"], env=env)
    account = orjson.loads(_run(env, "users", "account"))
    cleared = orjson.loads(_run(env, "users", "delivery", "--clear"))

    assert saved["delivery"]["frequency_caps"]["channels"]["sms"]["max_messages"] == 1
    assert saved["delivery"]["control_group_percent"] == 2
    assert rejected.exit_code == 1
    assert "delivery.control_group_percent" in rejected.stderr
    assert neither.exit_code == 2
    assert "give a settings file, or --clear" in neither.stderr
    assert both.exit_code == 2
    assert "not both" in both.stderr
    assert account["delivery"] == saved["delivery"]
    assert cleared["delivery"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "contains nothing, expected an object of fields"),
        (b"null\n", "contains nothing, expected an object of fields"),
        (b"- 1\n- 2\n", "contains a list, expected an object of fields"),
        (b"control_group_percent: 2024-01-01\n", "quote dates and times"),
        (b"control_group_percent: .inf\n", "JSON cannot carry"),
        (b"control_group_percent: 3 \xff\n", "cannot read"),
        (b'x: "\\ud800"\n', "JSON cannot carry"),
        (b"7\n", "contains a number, expected an object of fields"),
    ],
)
def test_cli_rejects_unsendable_files(
    live_api: dict[str, str], tmp_path: Path, content: bytes, message: str
) -> None:
    token = _run(live_api, "users", "bootstrap", "--email", _admin_email()).strip()
    env = {**live_api, "HERALD_TOKEN": token}
    saved = tmp_path / "saved.yaml"
    saved.write_text("control_group_percent: 2\n")
    _run(env, "users", "delivery", str(saved))
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(content)

    result = CliRunner().invoke(cli, ["users", "delivery", str(broken)], env=env)

    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    account = httpx.get(
        f"{env['HERALD_API_URL']}/account", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert account["delivery"]["control_group_percent"] == 2


def test_cli_follows_the_api_port(live_api: dict[str, str]) -> None:
    token = _run(live_api, "users", "bootstrap", "--email", _admin_email()).strip()
    port = live_api["HERALD_API_URL"].rsplit(":", 1)[1]
    # No HERALD_API_URL: the address comes from the API's own settings.
    env = {key: value for key, value in live_api.items() if key != "HERALD_API_URL"}
    env |= {"HERALD_TOKEN": token, "HERALD_API__PORT": port}

    listed = CliRunner().invoke(cli, ["campaigns", "list"], env={**env, "HERALD_API_URL": None})

    assert listed.exit_code == 0, listed.output


def test_cli_pause_and_stop(live_api: dict[str, str]) -> None:
    env, campaigns = _load_examples(live_api)
    campaign_id = campaigns["Welcome"]["id"]

    stopped = _run(env, "campaigns", "stop", campaign_id)
    listed = _run(env, "campaigns", "list", "--state", "stopped")

    assert "stopped" in stopped
    assert campaign_id in listed


def test_bootstrap_refuses_existing_email(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "HERALD_CONTROL_DB_URL": f"sqlite:///{tmp_path / 'control.db'}",
        "HERALD_CONTROL_FEED": "false",
    }
    command = [sys.executable, "-m", "herald.cli", "users", "bootstrap", "--email", "a@shop.test"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    again = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    bad_zone = subprocess.run(
        [*command[:-1], "b@shop.test", "--timezone", "Mars/Olympus"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("hrd_")
    assert again.returncode == 1
    assert again.stderr.startswith("error: a user 'a@shop.test' already exists")
    assert bad_zone.returncode == 1
    assert bad_zone.stderr.strip() == (
        "error: time zone 'Mars/Olympus' is unknown; use an IANA name such as 'UTC' or 'Europe/Berlin'"
    )
