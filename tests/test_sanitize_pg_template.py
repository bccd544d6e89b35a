"""Sanitized snapshots with ``postgres-template``, whose snapshot is a copy of the database on
the server: the copy is sanitized before it is closed, then vacuumed, so that not even its
files hold an original value (dead row versions included); the live database is only read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    assert_one_line,
    manifest_of,
    psql_admin,
)
from sanitize_checks import (
    ADD_USERS,
    assert_no_original_in,
    originals,
    query_via_django,
    restored_sanitized,
    sanitize_env,
)

CONNECTOR = ("--connector", "postgres-template")


@pytest.fixture
def project(postgres_project: Project) -> Iterator[Project]:
    """The example project as the superuser (a sanitized server copy needs one); the copies
    a failed test leaves are dropped after it, so that its database's role can go."""
    postgres_project.manage("shell", "-c", ADD_USERS)
    postgres_project.env.update(sanitize_env(EXAMPLE_DB_USER="postgres", EXAMPLE_DB_PASSWORD=""))
    try:
        yield postgres_project
    finally:
        for name in copies(postgres_project):
            psql_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_role_that_is_not_superuser_is_refused(postgres_project: Project) -> None:
    postgres_project.env.update(sanitize_env())
    result = postgres_project.snapctl("dump", *CONNECTOR, "--sanitize")
    assert_one_line(result, EXIT_USAGE, "needs a superuser", "--connector postgres")
    assert copies(postgres_project) == [] and postgres_project.store_entries() == []


def server_files(database: str) -> bytes:
    """Every file of ``database`` on the server (this machine's), as the server keeps them."""
    directory = Path(psql_admin("SHOW data_directory").strip())
    oid = psql_admin(f"SELECT oid FROM pg_database WHERE datname = '{database}'").strip()
    return b"".join(path.read_bytes() for path in sorted((directory / "base" / oid).iterdir()))


def copies(project: Project) -> list[str]:
    name = project.extra["db"].name
    out = psql_admin(f"SELECT datname FROM pg_database WHERE datname LIKE '{name}\\_snapctl\\_%'")
    return out.split()


def dump(project: Project, **env: str) -> str:
    result = project.snapctl("dump", *CONNECTOR, "--sanitize", "--no-prepare", **env)
    assert result.returncode == EXIT_OK, result.stderr
    return result.stdout.strip()


def test_the_server_copy_holds_no_original_value(project: Project) -> None:
    if not Path(psql_admin("SHOW data_directory").strip()).is_dir():
        pytest.skip("the PostgreSQL server's files are not on this machine")
    before = project.digest()
    values = originals(lambda sql: query_via_django(project, sql))
    # Statistics sample the columns' values: the copy must not keep them either.
    psql_admin("ANALYZE", project.extra["db"].name)
    first = dump(project)
    copy = manifest_of(project.snapshots / first)["databases"]["default"]["metadata"]
    psql_admin("CHECKPOINT")  # the copy's pages on disk, as the server has them

    assert_no_original_in(server_files(str(copy["copy_database"])), values)
    assert project.digest() == before
    second = dump(project)
    other = dump(project, SNAPCTL_SANITIZE_KEY="key-two")

    one = restored_sanitized(project, first, second)
    project.snapctl("restore", other, "--yes", check=True)
    two = project.digest()
    assert one["tables"]["shop_customer"] != before["tables"]["shop_customer"]
    assert two["tables"]["shop_customer"] != one["tables"]["shop_customer"]
    assert two["tables"]["shop_order"] == before["tables"]["shop_order"]
    for name in (first, second, other):
        project.snapctl("delete", "--yes", name, check=True)
    assert copies(project) == []


def test_a_failing_rule_drops_the_copy(project: Project, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "failing_fakes.py").write_text(
        "def broken(value, digest):\n    raise RuntimeError('injected failure')\n"
    )
    before = project.digest()
    rules = {"shop.Customer.notes": {"callable": "failing_fakes.broken"}}
    failed = project.snapctl(
        "dump",
        *CONNECTOR,
        "--sanitize",
        EXAMPLE_SANITIZE=json.dumps(rules),
        PYTHONPATH=str(code),
    )
    assert failed.returncode == EXIT_FAILED, failed.stderr
    assert "injected failure" in failed.stderr
    assert copies(project) == [] and project.store_entries() == []
    assert project.digest() == before
