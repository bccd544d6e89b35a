"""Concurrent snapctl processes: each works, or fails clearly on a lock; nothing is corrupted."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import EXIT_FAILED, EXIT_OK, Project, start_snapctl

from snapctl import locks


def sqlite_settings(project: Project) -> dict[str, str]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(project.env["EXAMPLE_DB_NAME"]).resolve()),
        "HOST": "",
        "PORT": "",
    }


def test_a_second_restore_into_the_same_database_fails_clearly(sqlite_project: Project) -> None:
    sqlite_project.dump()
    sqlite_project.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    current = sqlite_project.digest()
    with locks.database_lock("default", sqlite_settings(sqlite_project)):
        result = sqlite_project.snapctl("restore", "--yes")
    assert result.returncode == EXIT_FAILED
    assert "another snapctl is restoring into database 'default'" in result.stderr
    assert sqlite_project.digest() == current
    sqlite_project.snapctl("restore", "--yes", check=True)  # free again afterwards


def test_prune_waits_for_no_reader_and_readers_wait_for_no_pruner(
    sqlite_project: Project,
) -> None:
    names = [sqlite_project.dump(), sqlite_project.dump()]
    with locks.store_lock(sqlite_project.snapshots, shared=True):  # a restore is reading
        pruned = sqlite_project.snapctl("prune", "--keep", "0", "--yes")
        verified = sqlite_project.snapctl("verify", "--all")  # readers share
    assert pruned.returncode == EXIT_FAILED and "being read" in pruned.stderr
    assert verified.returncode == EXIT_OK
    assert sqlite_project.store_entries() == sorted(names)
    with locks.store_lock(sqlite_project.snapshots, shared=False):  # a prune is deleting
        restored = sqlite_project.snapctl("restore", "--yes")
    assert restored.returncode == EXIT_FAILED and "being deleted" in restored.stderr


def test_dumps_at_once_all_land_whole(sqlite_project: Project) -> None:
    procs = [
        start_snapctl(
            sqlite_project.env,
            "dump",
            "--label",
            "same",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    names = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert all(proc.returncode == EXIT_OK for proc in procs)
    assert len(set(names)) == 4
    verified = sqlite_project.snapctl("verify", "--all", check=True)
    assert verified.stdout.count(" ok") == 4
