"""Sanitized dumps on PostgreSQL (``postgres``) and MySQL/MariaDB (``mysql``), end to end:
the scratch copy on the server is sanitized and dumped, and dropped, also after a failure;
the live database is only read; no original value is in the artifact; fakes are the same
with one key and differ with another; unique columns and joins are kept."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TERMINATED,
    Project,
    manifest_of,
    mariadb_admin,
    psql_admin,
    start_snapctl,
)
from sanitize_checks import (
    ADD_USERS,
    JOIN_SQL,
    RULES,
    assert_no_original_in,
    originals,
    query_via_django,
    restored_sanitized,
    sanitize_env,
    unpacked_bytes,
)

ENGINES = ["postgres_project", "mariadb_project"]
# The servers' fixtures are asked for by name, which conftest cannot see: the tier said here.
pytestmark = pytest.mark.servers


@pytest.fixture(params=ENGINES)
def project(request: pytest.FixtureRequest) -> Project:
    project: Project = request.getfixturevalue(request.param)
    project.manage("shell", "-c", ADD_USERS)
    project.env.update(sanitize_env())
    return project


def scratch_databases(project: Project) -> list[str]:
    """Scratch copies of the project's database left on its server."""
    name = project.extra["db"].name
    if project.env["EXAMPLE_DB_ENGINE"] == "postgresql":
        out = psql_admin(
            f"SELECT datname FROM pg_database WHERE datname LIKE '{name}\\_snapctl\\_scratch%'"
        )
    else:
        out = mariadb_admin(f"SHOW DATABASES LIKE '{name}\\_snapctl\\_%'")
        return [found for found in out.split() if re.fullmatch(r".*_snapctl_[0-9a-f]{8}s", found)]
    return out.split()


def query(project: Project, sql: str) -> list[list[Any]]:
    return query_via_django(project, sql)


def dump(project: Project, *args: str, **env: str) -> str:
    result = project.snapctl("dump", "--sanitize", *args, **env)
    assert result.returncode == EXIT_OK, result.stderr
    return result.stdout.strip()


def test_a_sanitized_server_dump(project: Project) -> None:
    before = project.digest()
    values = originals(lambda sql: query(project, sql))
    assert query(project, JOIN_SQL) == [[1]]

    first = dump(project)

    assert_no_original_in(unpacked_bytes(project, first), values)
    assert project.digest() == before  # the live database was only read
    assert scratch_databases(project) == []
    entry = manifest_of(project.snapshots / first)["databases"]["default"]
    assert entry["sanitized"] == {"rules": dict(sorted(RULES.items()))}

    second = dump(project)
    other = dump(project, SNAPCTL_SANITIZE_KEY="key-two")
    one = restored_sanitized(project, first, second)
    emails = [row[0] for row in query(project, "SELECT email FROM shop_customer")]
    assert all(email.endswith("@example.invalid") for email in emails)
    project.snapctl("restore", other, "--yes", check=True)
    two = project.digest()
    for table in ("shop_customer", "auth_user", "shop_product"):
        assert one["tables"][table] != before["tables"][table]
        assert two["tables"][table] != one["tables"][table]
    for table in ("shop_order", "shop_orderline", "shop_tag", "shop_product_tags"):
        assert two["tables"][table] == one["tables"][table] == before["tables"][table]
    assert scratch_databases(project) == []


def test_a_failing_rule_drops_the_scratch_copy(project: Project, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "failing_fakes.py").write_text(
        textwrap.dedent(
            """
            def broken(value, digest):
                raise RuntimeError("injected failure")
            """
        )
    )
    before = project.digest()
    rules = {
        "shop.Customer.email": "email",
        "shop.Customer.notes": {"callable": "failing_fakes.broken"},
    }
    failed = project.snapctl(
        "dump", "--sanitize", EXAMPLE_SANITIZE=json.dumps(rules), PYTHONPATH=str(code)
    )
    assert failed.returncode == EXIT_FAILED, failed.stderr
    assert "injected failure" in failed.stderr
    assert project.store_entries() == []
    assert scratch_databases(project) == []
    assert project.digest() == before


def test_a_killed_dumps_scratch_copy_is_dropped_by_the_next(project: Project) -> None:
    db = project.extra["db"]
    if project.env["EXAMPLE_DB_ENGINE"] == "postgresql":
        psql_admin(f"CREATE DATABASE {db.name}_snapctl_scratch_0123abcd OWNER {db.user}")
    else:
        mariadb_admin(f"CREATE DATABASE {db.name}_snapctl_0123abcds")
    assert len(scratch_databases(project)) == 1
    dump(project)
    assert scratch_databases(project) == []


def test_a_young_mysql_scratch_copy_may_be_another_dumps(mariadb_project: Project) -> None:
    """Without the PROCESS privilege the session list shows only this user's sessions: a copy
    with a table made in the last hour may be another dump's, between two sessions."""
    project = mariadb_project
    project.manage("shell", "-c", ADD_USERS)
    project.env.update(sanitize_env())
    name = f"{project.extra['db'].name}_snapctl_0123abcds"
    mariadb_admin(f"CREATE DATABASE {name}")
    mariadb_admin(f"CREATE TABLE {name}.t (x int)")
    try:
        dump(project)
        assert scratch_databases(project) == [name]
    finally:
        mariadb_admin(f"DROP DATABASE IF EXISTS {name}")


def test_an_interrupted_dump_drops_its_scratch_copy(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "sanitizing"
    code = tmp_path / "code"
    code.mkdir()
    (code / "slow_fakes.py").write_text(
        "import pathlib, time\n\n\n"
        "def slow(value, digest):\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "    time.sleep(60)\n"
    )
    before = project.digest()
    rules = {"shop.Customer.notes": {"callable": "slow_fakes.slow"}}
    env = {**project.env, "EXAMPLE_SANITIZE": json.dumps(rules), "PYTHONPATH": str(code)}
    process = start_snapctl(env, "dump", "--sanitize", stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
        time.sleep(0.05)
    assert len(scratch_databases(project)) == 1  # the copy exists while it works
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == EXIT_TERMINATED
    assert scratch_databases(project) == []
    assert project.store_entries() == []
    assert project.digest() == before


def test_a_postgres_database_in_use_is_copied_by_streaming(postgres_project: Project) -> None:
    # With nobody else connected the copy is CREATE DATABASE ... TEMPLATE (the tests above);
    # with a session on the database, pg_dump | pg_restore, which never makes it wait.
    project = postgres_project
    project.manage("shell", "-c", ADD_USERS)
    project.env.update(sanitize_env())
    db = project.extra["db"]
    values = originals(lambda sql: query(project, sql))
    session = subprocess.Popen(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db.name, "-c", "SELECT pg_sleep(60)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        waiting = (
            f"SELECT 1 FROM pg_stat_activity WHERE datname = '{db.name}' "
            "AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
        )
        while not psql_admin(waiting).strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        name = dump(project)
        assert session.poll() is None  # neither ended nor made to wait
    finally:
        session.kill()
        session.wait()
    assert_no_original_in(unpacked_bytes(project, name), values)
    assert scratch_databases(project) == []
