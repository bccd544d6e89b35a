"""Faults injected into SQLite dumps and restores: kill -9 at random moments, a full disk.

Nothing may ever be half done: no partial snapshot is listed or restorable, and a killed
restore leaves the database exactly as it was or exactly as the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EXAMPLE, EXIT_FAILED, EXIT_OK, FaultLedger, Project, start_snapctl

TRIALS = 8


def content_hash(path: Path) -> str:
    """Everything the database holds, as SQL, hashed; opening it also rolls back a hot
    journal left by a killed writer, as any next user would."""
    with sqlite3.connect(path) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


def spawn(project: Project, *args: str) -> subprocess.Popen[bytes]:
    return start_snapctl(
        project.env,
        *args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def duration(project: Project, *args: str) -> float:
    start = time.monotonic()
    project.snapctl(*args, check=True)
    return time.monotonic() - start


@pytest.fixture
def big_project(sqlite_project: Project) -> Project:
    """Big enough that a dump or restore takes a noticeable time to kill."""
    sqlite_project.manage("bulk_fill", "--rows", "15000", "--seed", "1")
    return sqlite_project


def test_killed_dumps_never_leave_a_snapshot(big_project: Project, faults: FaultLedger) -> None:
    rng = random.Random(7)
    took = duration(big_project, "dump", "--label", "whole")
    for _ in range(TRIALS):
        proc = spawn(big_project, "dump", "--label", "killed")
        time.sleep(rng.uniform(0.05, took))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        faults.injected += 1
    listed = json.loads(big_project.snapctl("list", "--json", check=True).stdout)
    for snapshot in listed:
        assert faults.check(EXIT_OK, big_project.snapctl("verify", snapshot["name"]).returncode)
    # Any snapshot listed is whole; the killed ones that finished before the kill count too.
    assert all(s["name"].endswith(("-whole", "-killed")) for s in listed)
    name = big_project.dump("--label", "after")
    leftovers = [e for e in big_project.store_entries() if e.startswith(".tmp-")]
    assert leftovers == []  # the next dump removed what the killed ones left
    assert big_project.snapctl("verify", name).returncode == EXIT_OK


def test_killed_restores_leave_old_or_new_never_a_mix(
    big_project: Project, faults: FaultLedger
) -> None:
    rng = random.Random(11)
    path = Path(big_project.env["EXAMPLE_DB_NAME"])
    snapshot = content_hash(path)
    big_project.dump("--label", "target")
    big_project.manage("bulk_fill", "--rows", "15000", "--seed", "2")  # far from the snapshot
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM shop_orderline WHERE id % 3 = 0")
    changed = content_hash(path)
    took = duration(big_project, "restore", "target", "--yes")
    assert content_hash(path) == snapshot

    outcomes = {"old": 0, "new": 0}
    for _ in range(TRIALS):
        with sqlite3.connect(path) as conn:  # back to the changed state
            conn.execute("DELETE FROM shop_orderline WHERE id % 3 = 0")
        before = content_hash(path)
        proc = spawn(big_project, "restore", "target", "--yes")
        time.sleep(rng.uniform(0.05, took))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        faults.injected += 1
        after = content_hash(path)
        state = "new" if after == snapshot else "old" if after == before else "mixed"
        assert faults.check(True, state != "mixed"), "a killed restore left a mix"
        outcomes["old" if state == "old" else "new"] += 1
    assert changed != snapshot
    assert sum(outcomes.values()) == TRIALS


def limit_file_size(limit: int) -> None:
    """In the child: writes beyond ``limit`` bytes fail with EFBIG instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def on_a_full_disk(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """snapctl with no more than 1 MB per file: a disk that fills up."""
    return subprocess.run(
        [sys.executable, "-m", "snapctl", *args],
        cwd=EXAMPLE,
        env=project.env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: limit_file_size(1_000_000),
        timeout=120,
    )


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_full_disk_while_dumping(big_project: Project, faults: FaultLedger, compress: str) -> None:
    result = on_a_full_disk(big_project, "dump", "--compress", compress)
    faults.injected += 1
    assert result.returncode == EXIT_FAILED, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    said = result.stderr.lower()
    assert "too large" in said or "full" in said or "disk i/o error" in said
    assert faults.check([], big_project.store_entries())


def test_full_disk_while_unpacking_touches_nothing(
    big_project: Project, faults: FaultLedger
) -> None:
    path = Path(big_project.env["EXAMPLE_DB_NAME"])
    big_project.dump()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM shop_orderline")
    before = content_hash(path)
    result = on_a_full_disk(big_project, "restore", "--yes")
    faults.injected += 1
    assert result.returncode == EXIT_FAILED, result.stderr
    # The restore follows the unpacking; its one write transaction is rolled back.
    assert "unpacking" in result.stderr and "File too large" in result.stderr
    assert "database unchanged" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert faults.check(before, content_hash(path))
