"""`status` shows how the last email and heartbeat went, with the reason when they failed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.smtp import closed_port
from tests.helpers import write_config


def test_status_reports_a_failed_email_without_changing_the_run(
        tmp_path: Path, siip: Path, cli: Callable[..., Any]) -> None:
    config = write_config(
        tmp_path / "c.toml", siip, tmp_path / "b",
        f'[email]\nenabled = true\nsmtp_host = "127.0.0.1"\nsmtp_port = {closed_port()}\n'
        f'security = "none"\nsender = "backup@oficina.org"\nto = ["jefe@oficina.org"]\n'
        f'timeout_seconds = 2\n')
    once = cli("-c", str(config), "once", "--json")
    assert once.returncode == 0, once.stderr  # the email failing never fails the backup
    assert json.loads(once.stdout)["status"] == "ok"

    status = json.loads(cli("-c", str(config), "status", "--json", check=True).stdout)
    email = status["notifications"]["email"]
    assert email["state"] == "failed"
    assert "refused" in email["error"].lower()
    text = cli("-c", str(config), "status", check=True).stdout
    assert "email:" in text and "last failed" in text
