"""Instant restores on PostgreSQL: a prepared copy kept on the server, swapped in by a
restore without reading the snapshot; what happens when it cannot be used; background
preparation after dump and restore; clean-up after kills; delete and list.

Each test checks that no side database of the test's database is left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    EXIT_OK,
    EXIT_USAGE,
    Project,
    artifact_path,
    one_line,
    psql_admin,
    start_snapctl,
)
from test_postgres import CHANGES, SCHEMA_OBJECTS, schema_state, user_sql

# Rows, sequences and schema changed after a dump (without SCHEMA_OBJECTS, which CHANGES
# drops).
DATA_CHANGES = CHANGES.split("CREATE VIEW")[0]
PREPARED = r"_snapctl_prep_[0-9a-f]{8}"
RETIRED = r"_snapctl_old_[0-9a-f]{8}"


def side_databases(database: str, pattern: str = r"_snapctl_.*") -> list[str]:
    like = database.replace("_", "\\_") + "\\_snapctl\\_%"
    names = psql_admin(f"SELECT datname FROM pg_database WHERE datname LIKE '{like}'").split()
    return sorted(name for name in names if re.fullmatch(re.escape(database) + pattern, name))


def wait_until(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def project(postgres_project: Project) -> Iterator[Project]:
    """The PostgreSQL example project; afterwards no side database of it may be left once
    its background work is done (its own prepared copies are dropped by ``delete``)."""
    db = postgres_project.extra["db"]
    try:
        yield postgres_project
        wait_until(lambda: not side_databases(db.name, RETIRED))
        left = side_databases(db.name)
    finally:
        for name in side_databases(db.name):
            psql_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert left == []


def restore_json(project: Project, *args: str, **env: str) -> dict[str, object]:
    ran = project.snapctl("restore", "--yes", "--json", *args, **env)
    assert ran.returncode == EXIT_OK, ran.stderr
    return json.loads(ran.stdout)  # type: ignore[no-any-return]


def prepare_json(project: Project, *args: str, **env: str) -> dict[str, object]:
    ran = project.snapctl("prepare", "--json", *args, **env)
    assert ran.returncode == EXIT_OK, ran.stderr
    return json.loads(ran.stdout)  # type: ignore[no-any-return]


def test_instant_restore_is_exact_and_reads_nothing(project: Project) -> None:
    db = project.extra["db"]
    user_sql(db, SCHEMA_OBJECTS)
    before, schema_before = project.digest(), schema_state(db)
    name = project.dump()
    prepared = prepare_json(project)
    (copy,) = prepared["prepared"]  # type: ignore[misc]
    assert copy["state"] == "ready" and not copy["already"] and copy["server_size"] > 0
    assert side_databases(db.name) == [copy["copy"]]
    # Closed to connections until swapped in: the application cannot change it.
    assert (
        psql_admin(f"SELECT datallowconn FROM pg_database WHERE datname = '{copy['copy']}'").strip()
        == "f"
    )
    listed = json.loads(project.snapctl("list", "--json", check=True).stdout)
    assert listed[0]["prepared"][0]["state"] == "ready"
    assert "ready" in project.snapctl("show", name, check=True).stdout
    # Again: the copy is there already. Dropped and prepared anew, it is another.
    assert prepare_json(project)["prepared"][0]["already"]  # type: ignore[index]
    project.snapctl("prepare", "--drop", check=True)
    assert side_databases(db.name) == []
    (copy,) = prepare_json(project)["prepared"]  # type: ignore[misc]
    user_sql(db, CHANGES)
    # Nothing of the snapshot is read: a damaged artifact does not stop the swap.
    stored = artifact_path(project.snapshots / name)
    stored.write_bytes(b"\0" * stored.stat().st_size)
    restored = restore_json(project)
    assert restored["instant"] == ["default"]
    assert project.digest() == before and schema_state(db) == schema_before
    # The application connects again; its comment and owner are the live database's.
    assert user_sql(db, "SELECT count(*) FROM shop_customer").strip() != ""
    assert side_databases(db.name, PREPARED) == []


def test_restore_message_says_it_was_instant(project: Project) -> None:
    project.dump()
    project.snapctl("prepare", check=True)
    ran = project.snapctl("restore", "--yes", check=True)
    assert "instantly" in ran.stderr and "prepared copy" in ran.stderr


def test_a_copy_of_another_snapshot_is_not_used(project: Project) -> None:
    db = project.extra["db"]
    first = project.dump()
    project.snapctl("prepare", first, check=True)
    user_sql(db, DATA_CHANGES)
    expected = project.digest()
    project.dump()
    user_sql(db, "DELETE FROM shop_product_tags")
    assert restore_json(project)["instant"] == []
    assert project.digest() == expected
    project.snapctl("delete", "--yes", first, check=True)
    assert side_databases(db.name, PREPARED) == []


@pytest.mark.parametrize(
    "tamper",
    [
        "COMMENT ON DATABASE {copy} IS 'not the mark'",
        "COMMENT ON DATABASE {live} IS 'changed since'",
        "DROP DATABASE {copy}",
        "ALTER DATABASE {copy} WITH ALLOW_CONNECTIONS true",
    ],
    ids=["copy-without-mark", "live-changed", "copy-gone", "copy-reopened"],
)
def test_a_copy_that_cannot_be_used_falls_back_to_the_snapshot(
    project: Project, tamper: str
) -> None:
    db = project.extra["db"]
    before = project.digest()
    project.dump()
    (copy,) = prepare_json(project)["prepared"]  # type: ignore[misc]
    user_sql(db, DATA_CHANGES)
    psql_admin(tamper.format(copy=copy["copy"], live=db.name))
    ran = project.snapctl("restore", "--yes", "--json")
    assert ran.returncode == EXIT_OK, ran.stderr
    assert json.loads(ran.stdout)["instant"] == []
    assert "cannot be used" in ran.stderr
    assert project.digest() == before
    assert side_databases(db.name, PREPARED) == []


def test_background_preparation_after_dump_and_restore(project: Project) -> None:
    db = project.extra["db"]
    env = {"SNAPCTL_PREPARE": "latest"}
    before = project.digest()
    name = project.snapctl("dump", **env, check=True).stdout.strip()
    # The dump returned at once; `prepare` waits for the copy it started.
    waited = prepare_json(project, **env)["prepared"][0]  # type: ignore[index]
    assert waited["state"] == "ready"
    user_sql(db, DATA_CHANGES)
    assert restore_json(project, **env)["instant"] == ["default"]
    assert project.digest() == before
    # The restore used its copy up and started preparing the same snapshot again.
    again = prepare_json(project, **env)["prepared"][0]  # type: ignore[index]
    assert again["state"] == "ready" and again["copy"] != waited["copy"]
    user_sql(db, DATA_CHANGES)
    assert restore_json(project, "--no-prepare", **env)["instant"] == ["default"]
    assert project.digest() == before
    wait_until(lambda: not side_databases(db.name, RETIRED))
    assert side_databases(db.name, PREPARED) == []  # --no-prepare: none made again
    project.snapctl("delete", "--yes", name, check=True)


def test_latest_policy_keeps_one_copy_per_database(project: Project) -> None:
    db = project.extra["db"]
    env = {"SNAPCTL_PREPARE": "latest"}
    first = project.snapctl("dump", **env, check=True).stdout.strip()
    project.snapctl("prepare", first, check=True)
    second = project.snapctl("dump", **env, check=True).stdout.strip()
    project.snapctl("prepare", second, check=True)
    wait_until(lambda: len(side_databases(db.name, PREPARED)) == 1)
    listed = json.loads(project.snapctl("list", "--json", check=True).stdout)
    assert [s["name"] for s in listed if s["prepared"]] == [second]
    project.snapctl("prune", "--keep", "0", "--yes", check=True)
    assert side_databases(db.name, PREPARED) == []


def slow_pg_restore(directory: Path, seconds: float) -> str:
    """A PATH whose pg_restore waits ``seconds`` before running the real one."""
    directory.mkdir()
    real = subprocess.run(["which", "pg_restore"], capture_output=True, text=True).stdout.strip()
    script = directory / "pg_restore"
    script.write_text(f'#!/bin/sh\nsleep {seconds}\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ['PATH']}"


def test_a_killed_preparation_is_cleaned_up(project: Project, tmp_path: Path) -> None:
    db = project.extra["db"]
    project.dump()
    path = slow_pg_restore(tmp_path / "bin", 30)
    proc = start_snapctl(
        {**project.env, "PATH": path}, "prepare", start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: side_databases(db.name, PREPARED))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (left,) = side_databases(db.name, PREPARED)
    # The next command finds the record of a preparation nobody runs, and drops its copy.
    listed = json.loads(project.snapctl("list", "--json", check=True).stdout)
    assert listed[0]["prepared"][0]["state"] == "interrupted"
    (copy,) = prepare_json(project)["prepared"]  # type: ignore[misc]
    assert side_databases(db.name, PREPARED) == [copy["copy"]]
    assert left not in side_databases(db.name) or left == copy["copy"]
    assert copy["state"] == "ready"
    project.snapctl("delete", "--yes", "latest", check=True)


def test_restore_waits_for_the_copy_being_prepared(project: Project, tmp_path: Path) -> None:
    db = project.extra["db"]
    before = project.digest()
    project.dump()
    path = slow_pg_restore(tmp_path / "bin", 2)
    # Once prepared slowly, a preparation of this database is expected to be slow: a restore
    # waits for one under way rather than load afresh.
    project.snapctl("prepare", PATH=path, check=True)
    project.snapctl("restore", "--yes", check=True)
    proc = start_snapctl(
        {**project.env, "PATH": path}, "prepare",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: side_databases(db.name, PREPARED))
        user_sql(db, "DELETE FROM shop_product_tags")
        assert restore_json(project)["instant"] == ["default"]
    finally:
        proc.wait(timeout=60)
    assert project.digest() == before


def test_no_room_on_the_server_is_one_line_and_makes_nothing(project: Project) -> None:
    db = project.extra["db"]
    # The role may see where the server keeps its files, as the disk check needs.
    psql_admin(f"GRANT pg_read_all_settings TO {db.user}")
    project.dump()
    ran = project.snapctl("prepare", EXAMPLE_PG_KEEP_FREE="0.9999")
    assert ran.returncode == EXIT_USAGE
    line = one_line(ran.stderr)
    assert "not enough room for a prepared copy" in line and "more is needed" in line
    assert side_databases(db.name) == []
    listed = json.loads(project.snapctl("list", "--json", check=True).stdout)
    assert listed[0]["prepared"] == []


def test_template_snapshots_restore_instantly_too(project: Project) -> None:
    db = project.extra["db"]
    before = project.digest()
    name = project.dump("--connector", "postgres-template")
    project.snapctl("prepare", check=True)
    user_sql(db, DATA_CHANGES)
    assert restore_json(project)["instant"] == ["default"]
    assert project.digest() == before
    project.snapctl("delete", "--yes", name, check=True)


def test_prepare_refuses_a_connector_without_copies(sqlite_project: Project) -> None:
    sqlite_project.dump()
    ran = sqlite_project.snapctl("prepare")
    assert ran.returncode == EXIT_USAGE
    assert "keeps prepared copies" in one_line(ran.stderr)


def test_a_bad_prepare_setting_fails_before_the_dump(sqlite_project: Project) -> None:
    ran = sqlite_project.snapctl("dump", SNAPCTL_PREPARE="sometimes")
    assert ran.returncode == EXIT_USAGE
    assert "SNAPSHOTS['PREPARE']" in one_line(ran.stderr)
    assert sqlite_project.store_entries() == []


def test_a_restore_right_after_a_dump_finds_its_copy_under_way(project: Project) -> None:
    """The dump writes the copy's record before it starts the background process: a
    restore at once waits for that copy instead of loading the snapshot beside it."""
    db = project.extra["db"]
    before = project.digest()
    env = {"SNAPCTL_PREPARE": "latest"}
    name = project.snapctl("dump", **env, check=True).stdout.strip()
    user_sql(db, DATA_CHANGES)
    assert restore_json(project, "--no-prepare", **env)["instant"] == ["default"]
    assert project.digest() == before
    project.snapctl("delete", "--yes", name, check=True)


def test_instant_swap_ends_our_sessions_and_waits_for_another_roles(project: Project) -> None:
    """Our role's sessions are ended and named; another role's session, which snapctl may
    not end, is waited for (up to the lock timeout) before the copy goes in."""
    import threading

    from test_postgres import backend_pid, connect_as, is_alive

    db = project.extra["db"]
    before = project.digest()
    project.dump()
    project.snapctl("prepare", check=True)
    user_sql(db, DATA_CHANGES)
    ours = connect_as(db, "our app")
    other = connect_as(db, "leaves soon", admin=True)
    leaving = threading.Timer(5, other.close)
    leaving.start()
    try:
        ran = project.snapctl("restore", "--yes", "--json", "--lock-timeout", "30")
    finally:
        leaving.cancel()
        other.close()
    assert ran.returncode == EXIT_OK, ran.stderr
    assert json.loads(ran.stdout)["instant"] == ["default"]
    assert "waiting up to 30 s for 1 session that snapctl may not end" in ran.stderr
    assert f"pid {backend_pid(ours)}" in ran.stderr and "must reconnect" in ran.stderr
    assert not is_alive(ours)
    assert project.digest() == before


def test_instant_swap_without_a_session_in_the_way_ends_ours(project: Project) -> None:
    from test_postgres import backend_pid, connect_as, is_alive

    db = project.extra["db"]
    project.dump()
    project.snapctl("prepare", check=True)
    ours = connect_as(db, "our app")
    ran = project.snapctl("restore", "--yes", "--json")
    assert ran.returncode == EXIT_OK, ran.stderr
    assert json.loads(ran.stdout)["instant"] == ["default"]
    assert f"pid {backend_pid(ours)}" in ran.stderr and "must reconnect" in ran.stderr
    assert not is_alive(ours)


def test_mariadb_restores_instantly_from_its_copy(mariadb_project: Project) -> None:
    """The same on MariaDB, end to end: prepared, swapped in, exact, and dropped by delete."""
    from helpers import mariadb_admin

    project, db = mariadb_project, mariadb_project.extra["db"]
    before = project.digest()
    name = project.dump()
    (copy,) = prepare_json(project)["prepared"]  # type: ignore[misc]
    assert copy["state"] == "ready" and copy["server_size"] > 0
    mariadb_admin(f"DELETE FROM {db.name}.shop_product_tags; DELETE FROM {db.name}.shop_tag;")
    assert restore_json(project)["instant"] == ["default"]
    assert project.digest() == before
    again = prepare_json(project)["prepared"][0]  # type: ignore[index]
    project.snapctl("delete", "--yes", name, check=True)
    like = db.name.replace("_", "\\_") + "\\_snapctl\\_%"
    deadline = time.monotonic() + 60
    while mariadb_admin(f"SHOW DATABASES LIKE '{like}'").split() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mariadb_admin(f"SHOW DATABASES LIKE '{like}'").split() == [], again


def test_a_hostile_database_comment_is_kept_as_text(project: Project, tmp_path: Path) -> None:
    """The comment of the live database goes into the swap's SQL: quotes, dollar quotes and
    psql meta-commands in it stay text (the owner role, the application's, can set it)."""
    db = project.extra["db"]
    planted = tmp_path / "pwned"
    comment = f"A $snapctl$ $z$ ' \\! touch {planted}\n\\! touch {planted}\n$$"
    quoted = comment.replace("'", "''")
    user_sql(db, f"COMMENT ON DATABASE {db.name} IS '{quoted}'")
    before = project.digest()
    project.dump()
    project.snapctl("prepare", check=True)
    user_sql(db, DATA_CHANGES)
    assert restore_json(project)["instant"] == ["default"]
    assert not planted.exists()
    assert project.digest() == before
    shown = psql_admin(
        f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{db.name}'"
    )
    assert shown.rstrip("\n") == comment


def test_an_encrypted_snapshot_is_prepared_only_where_it_can_be_decrypted(
    project: Project, tmp_path: Path
) -> None:
    """A server that only encrypts (no identity there) prepares nothing after its dump; a
    developer with the key prepares it and restores it instantly, exactly."""
    db = project.extra["db"]
    identity = tmp_path / "me.txt"
    public = project.snapctl("keygen", "--output", str(identity), check=True).stdout.strip()
    stranger = tmp_path / "server-home"
    stranger.mkdir()
    server = {"SNAPCTL_PREPARE": "latest", "HOME": str(stranger)}
    before = project.digest()
    project.snapctl("dump", "--encrypt-to", public, **server, check=True)
    records = Path(project.env["SNAPCTL_STATE_DIR"]) / "copies"
    assert not records.exists() or not list(records.glob("*.json"))  # none was started
    assert side_databases(db.name, PREPARED) == []

    developer = {"SNAPCTL_PREPARE": "latest", "SNAPCTL_IDENTITY": str(identity)}
    assert prepare_json(project, **developer)["prepared"][0]["state"] == "ready"  # type: ignore[index]
    user_sql(db, DATA_CHANGES)
    refused = project.snapctl("restore", "--yes", **server)
    assert refused.returncode == EXIT_USAGE and public in refused.stderr
    assert restore_json(project, "--no-prepare", **developer)["instant"] == ["default"]
    assert project.digest() == before
