"""Invalid settings stop every command at start with one line per setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _herald(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herald.cli", "kafka", "status"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "HERALD_ENGINE__SESSION_TIMEOUT_S",
            "3",
            "error: invalid HERALD_ENGINE__SESSION_TIMEOUT_S='3': "
            "Input should be greater than or equal to 6",
        ),
        (
            "HERALD_ENGINE__MAX_LATENESS_S",
            "1e400",
            "error: invalid HERALD_ENGINE__MAX_LATENESS_S='1e400': Input should be a finite number",
        ),
        (
            "HERALD_KAFKA__PARTITIONS",
            "four",
            "error: invalid HERALD_KAFKA__PARTITIONS='four': "
            "Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_invalid_setting_one_line(tmp_path, variable, value, message) -> None:  # type: ignore[no-untyped-def]
    result = _herald({variable: value}, tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip() == message


def test_secret_setting_value_not_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _herald({"HERALD_INGEST__WRITE_KEYS": '[{"secret": "s3cr3t"}]'}, tmp_path)

    assert result.returncode == 2
    assert "HERALD_INGEST__WRITE_KEYS" in result.stderr
    assert "s3cr3t" not in result.stderr


def test_malformed_json_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _herald({"HERALD_INGEST__WRITE_KEYS": "[1"}, tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith('error: error parsing value for field "ingest"')


def test_equal_broker_ports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ports = {"HERALD_BROKER__PORT": "49194", "HERALD_BROKER__CONTROLLER_PORT": "49194"}
    result = _herald(ports, tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid HERALD_BROKER__CONTROLLER_PORT='49194': "
        "Value error, must differ from HERALD_BROKER__PORT"
    )
