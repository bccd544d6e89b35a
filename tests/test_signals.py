"""SIGTERM (docker stop, systemd, CI runners) and Ctrl-C end snapctl the same clean way: its
tools end with it, no secret file stays on disk, no partial snapshot stays, one line, exit
143 or 130 (issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import EXIT_INTERRUPTED, EXIT_TERMINATED, Project, start_snapctl

# A pg_dump that says where it is, then never finishes: the dump is under way.
SLOW_PG_DUMP = """#!/bin/sh
echo $$ > "{pidfile}"
exec sleep 60
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [
        (signal.SIGTERM, EXIT_TERMINATED, "terminated"),
        (signal.SIGINT, EXIT_INTERRUPTED, "interrupted"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_during_a_dump_ends_it_cleanly(
    postgres_project: Project, tmp_path: Path, signum: int, code: int, word: str
) -> None:
    bindir, temp = tmp_path / "bin", tmp_path / "tmp"
    bindir.mkdir()
    temp.mkdir()
    pidfile = tmp_path / "pg_dump.pid"
    (bindir / "pg_dump").write_text(SLOW_PG_DUMP.format(pidfile=pidfile))
    (bindir / "pg_dump").chmod(0o755)
    env = {
        **postgres_project.env,
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(temp),
    }
    proc = start_snapctl(
        env,
        "dump",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not pidfile.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert pidfile.exists(), proc.communicate()[1]
    time.sleep(0.2)  # the pid is written: pg_dump is (about to be) sleeping
    tool = int(pidfile.read_text())
    assert any(temp.glob("snapctl-*.pgpass")), "the passfile exists while the dump runs"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    assert err.strip() == f"snapctl: {word}", err
    assert out == ""
    assert not _alive(tool), "pg_dump was left running"
    assert not any(temp.glob("snapctl-*.pgpass")), "the passfile stayed on disk"
    assert postgres_project.store_entries() == []  # no snapshot, no partial one
