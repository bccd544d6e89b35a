"""The README's promise: one command sets up and runs snapctl against the example project."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import EXAMPLE, clean_env

pytestmark = pytest.mark.e2e  # runs the quick start script, snapctl and manage.py in it


def test_the_quick_start_shows_the_data_come_back(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(EXAMPLE / "quickstart.sh")],
        env=clean_env(
            EXAMPLE_DB_NAME=str(tmp_path / "db.sqlite3"), SNAPCTL_DIR=str(tmp_path / "snaps")
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    before, changed, after = re.findall(r"(\d+) customers, (\d+) orders", shown)
    assert before == after != changed
    assert f"into {tmp_path / 'snaps'}" in shown  # where the snapshot went
    assert len(list((tmp_path / "snaps").glob("*-quickstart"))) == 1
