"""The postgres-template connector end to end: server-side copies, restore by rename swap.

Each test checks afterwards that no temporary database of the swap is left, and drops the
snapshot copies it made (the session fixture would drop them at the end anyway).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    EXAMPLE,
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    ServerDatabase,
    artifact_path,
    manifest_of,
    project_for,
    psql_admin,
)
from test_postgres import (
    CHANGES,
    SCHEMA_OBJECTS,
    _wrappers,
    database_oid,
    one_line,
    open_session,
    schema_state,
    user_sql,
)

from snapctl.connectors.postgres import template as pg_template
from snapctl.errors import ConfigurationError, IntegrityError

CONNECTOR = ("--connector", "postgres-template")
DATABASE_COMMENT = (
    "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{}'"
)

# Calls one hook of the connector on a snapshot's artifact as stored, with the example
# project's settings, the way the commands will: exit code and one line on an error.
HOOK = """
import sys
from pathlib import Path

import django

django.setup()
from snapctl.connectors.postgres.template import PostgresTemplateConnector
from snapctl.errors import SnapctlError

try:
    getattr(PostgresTemplateConnector(), sys.argv[1])("default", Path(sys.argv[2]))
except SnapctlError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def databases_like(prefix: str) -> list[str]:
    """Databases whose name starts with ``prefix`` followed by ``_snapctl_``."""
    pattern = prefix.replace("_", "\\_") + "\\_snapctl\\_%"
    return psql_admin(
        f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' ORDER BY 1"
    ).split()


def temporary_databases(database: str) -> list[str]:
    """The swap's databases beside ``database`` (other tests may run on the same server)."""
    return [
        name
        for name in databases_like(database)
        if re.fullmatch(r".*_snapctl_(new|old)_[0-9a-f]{8}", name)
    ]


@pytest.fixture
def template_project(postgres_project: Project) -> Iterator[Project]:
    """The PostgreSQL example project; afterwards no temporary database may be left."""
    db = postgres_project.extra["db"]
    try:
        yield postgres_project
    finally:
        leftovers = temporary_databases(db.name)
        for name in databases_like(db.name):
            psql_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert leftovers == []


def metadata(project: Project, name: str) -> dict[str, object]:
    entry = manifest_of(project.snapshots / name)["databases"]["default"]
    return entry["metadata"]  # type: ignore[no-any-return]


def hook(project: Project, name: str, snapshot: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HOOK, name, str(artifact_path(project.snapshots / snapshot))],
        cwd=EXAMPLE,
        env={**project.env, "DJANGO_SETTINGS_MODULE": "example_project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def restore(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return project.snapctl("restore", "--yes", *args)


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_is_exact_and_the_snapshot_reusable(template_project: Project) -> None:
    project = template_project
    db = project.extra["db"]
    user_sql(db, SCHEMA_OBJECTS)
    before, schema_before = project.digest(), schema_state(db)
    name = project.dump(*CONNECTOR)
    meta = metadata(project, name)
    copy = str(meta["copy_database"])
    assert meta["format"] == "template" and meta["source_database"] == db.name
    assert meta["server_version"] == psql_admin("SHOW server_version").strip()
    assert databases_like(db.name) == [copy]
    # list and show tell the copy's size on the server, not only the descriptor's bytes.
    server_size = int(psql_admin(f"SELECT pg_database_size('{copy}')"))
    assert meta["server_size"] == server_size
    shown = json.loads(project.snapctl("show", name, "--json", check=True).stdout)
    assert shown["server_size"] == server_size and shown["size"] < 4096
    assert "on the server" in project.snapctl("list", check=True).stdout
    # Nobody may connect to the copy or has been granted anything on it.
    assert psql_admin(f"SELECT datallowconn FROM pg_database WHERE datname = '{copy}'") == "f\n"
    user_sql(db, f"COMMENT ON DATABASE {db.name} IS 'kept'")

    for _ in range(2):  # the copy stays: the same snapshot restores again
        user_sql(db, CHANGES)
        assert user_sql(db, "SELECT to_regclass('after_dump') IS NOT NULL") == "t"
        oid = database_oid(db.name)
        with open_session(db) as session:
            result = restore(project, name)
            assert result.returncode == EXIT_OK, result.stderr
            assert session.wait(timeout=10) != 0  # terminated by the swap
        assert database_oid(db.name) != oid  # swapped in by rename
        assert project.digest() == before  # rows and sequences
        assert schema_state(db) == schema_before
        assert user_sql(db, "SELECT to_regclass('after_dump') IS NULL") == "t"
        assert user_sql(db, "SELECT count(*) FROM labels WHERE code = 'ALPHA'") == "1"
        # Database-level properties are the live database's, not the copy's.
        assert psql_admin(DATABASE_COMMENT.format(db.name)) == "kept\n"
        assert temporary_databases(db.name) == []
        assert databases_like(db.name) == [copy]

    # The application works afterwards: the next id is the one after the snapshot's.
    new_id = user_sql(db, "INSERT INTO shop_tag (name) VALUES ('n') RETURNING id")
    assert int(new_id) == before["sequences"]["public.shop_tag_id_seq"] + 1


def test_forget_drops_the_copy_and_check_sees_it_gone(template_project: Project) -> None:
    project = template_project
    db = project.extra["db"]
    name = project.dump(*CONNECTOR)
    copy = str(metadata(project, name)["copy_database"])
    checked = hook(project, "check", name)
    assert checked.returncode == EXIT_OK, checked.stderr
    forgot = hook(project, "forget", name)
    assert forgot.returncode == EXIT_OK, forgot.stderr
    assert databases_like(db.name) == []
    again = hook(project, "forget", name)  # already gone: fine
    assert again.returncode == EXIT_OK, again.stderr
    checked = hook(project, "check", name)
    assert checked.returncode == EXIT_INTEGRITY
    assert copy in one_line(checked.stderr) and "gone" in checked.stderr


def test_forget_leaves_a_database_that_is_not_its_copy(template_project: Project) -> None:
    project = template_project
    db = project.extra["db"]
    name = project.dump(*CONNECTOR)
    copy = str(metadata(project, name)["copy_database"])
    psql_admin(f"COMMENT ON DATABASE \"{copy}\" IS 'not snapctl'")
    assert hook(project, "check", name).returncode == EXIT_INTEGRITY
    assert hook(project, "forget", name).returncode == EXIT_OK
    assert databases_like(db.name) == [copy]


# --- the limits, and their errors --------------------------------------------------------------


def test_dump_while_another_session_is_connected_fails_clearly(template_project: Project) -> None:
    project = template_project
    db = project.extra["db"]
    with open_session(db):
        result = project.snapctl("dump", *CONNECTOR)
    assert result.returncode == EXIT_FAILED, result.stderr
    line = one_line(result.stderr)
    assert "1 other session is connected" in line and "--connector postgres" in line
    assert databases_like(db.name) == []
    assert project.store_entries() == []


def test_restore_with_the_copy_dropped_changes_nothing(template_project: Project) -> None:
    project = template_project
    db = project.extra["db"]
    name = project.dump(*CONNECTOR)
    psql_admin(f'DROP DATABASE "{metadata(project, name)["copy_database"]}"')
    user_sql(db, "DELETE FROM shop_orderline; INSERT INTO shop_tag (name) VALUES ('kept')")
    changed, oid = project.digest(), database_oid(db.name)
    result = restore(project, name)
    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert "gone from the server" in one_line(result.stderr)
    assert project.digest() == changed
    assert database_oid(db.name) == oid
    assert psql_admin(f"SELECT datallowconn FROM pg_database WHERE datname = '{db.name}'") == "t\n"


def test_restore_into_another_database_is_refused(
    template_project: Project, postgres_template: ServerDatabase, tmp_path: Path
) -> None:
    project = template_project
    db = project.extra["db"]
    name = project.dump(*CONNECTOR)
    other = f"snapctl_t_{secrets.token_hex(4)}"
    psql_admin(f"CREATE DATABASE {other} TEMPLATE {postgres_template.name} OWNER {db.user}")
    try:
        oid = database_oid(other)
        result = project.snapctl("restore", "--yes", name, EXAMPLE_DB_NAME=other)
        assert result.returncode == EXIT_INTEGRITY, result.stderr
        # Said first: the snapshot, named, is of another database; then the refusal.
        note, refusal = result.stderr.splitlines()
        assert "was taken of postgresql database" in note
        assert f'is a copy of database "{db.name}"' in one_line(refusal + "\n")
        assert database_oid(other) == oid
    finally:
        psql_admin(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")


def test_without_createdb_the_privilege_is_named(nocreatedb_project: Project) -> None:
    db = nocreatedb_project.extra["db"]
    result = nocreatedb_project.snapctl("dump", *CONNECTOR)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "CREATEDB" in one_line(result.stderr)
    assert databases_like(db.name) == []


def test_long_database_name_fits_and_restores(
    postgres_template: ServerDatabase, tmp_path: Path
) -> None:
    """A 63-byte name: the copy and the swap's databases must fit, or PostgreSQL would cut
    them and collide."""
    name = (
        ("snapctl_long_" + secrets.token_hex(4) + "_" + "é" * 40)
        .encode()[:63]
        .decode("utf-8", "ignore")
    )
    user = postgres_template.user
    psql_admin(f'CREATE DATABASE "{name}" TEMPLATE {postgres_template.name} OWNER {user}')
    try:
        db = ServerDatabase("postgresql", name, user, postgres_template.password, port="5432")
        project = project_for(db.env(), tmp_path / "snaps")
        before = project.digest()
        snapshot = project.dump(*CONNECTOR)
        copy = str(metadata(project, snapshot)["copy_database"])
        assert len(copy.encode()) <= 63
        assert psql_admin(f"SELECT count(*) FROM pg_database WHERE datname = '{copy}'") == "1\n"
        project.manage("shell", "-c", "from shop.models import Tag; Tag.objects.all().delete()")
        result = project.snapctl("restore", "--yes")
        assert result.returncode == EXIT_OK, result.stderr
        assert project.digest() == before
        assert hook(project, "forget", snapshot).returncode == EXIT_OK
        assert psql_admin(f"SELECT count(*) FROM pg_database WHERE datname = '{copy}'") == "0\n"
        assert temporary_databases(db.name) == []
    finally:
        psql_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_runs_no_program_and_never_shows_the_password(
    template_project: Project, tmp_path: Path
) -> None:
    project = template_project
    db = project.extra["db"]
    log = tmp_path / "calls.log"
    _wrappers(tmp_path / "bin", log)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    dumped = project.snapctl("dump", *CONNECTOR, PATH=path)
    restored = project.snapctl("restore", "--yes", PATH=path)
    assert dumped.returncode == EXIT_OK and restored.returncode == EXIT_OK, (
        dumped.stderr + restored.stderr
    )
    # Every step is a statement on snapctl's own connection: no program, no passfile.
    assert not log.exists()
    assert db.password not in dumped.stdout + dumped.stderr + restored.stdout + restored.stderr


# --- without a server ------------------------------------------------------------------------


def test_copy_names_fit_in_63_bytes_and_differ() -> None:
    long = "ä" * 31 + "x"  # 63 bytes
    names = {pg_template.copy_name(long) for _ in range(50)}
    assert len(names) == 50
    assert all(len(name.encode()) <= 63 and "_snapctl_" in name for name in names)


def test_descriptor_is_read_as_stored_or_unpacked(tmp_path: Path) -> None:
    import gzip

    import zstandard

    descriptor = {
        "format": "template",
        "descriptor_version": 1,
        "server": {"host": "db", "port": "5432", "system_identifier": "1"},
        "source_database": "shop",
        "copy_database": "shop_snapctl_0123abcd",
        "token": "t",
    }
    data = json.dumps(descriptor).encode()
    for suffix, content in (
        ("", data),
        (".zst", zstandard.ZstdCompressor().compress(data)),
        (".gz", gzip.compress(data)),
    ):
        path = tmp_path / f"default.json{suffix}"
        path.write_bytes(content)
        read = pg_template.read_descriptor(path)
        assert (read.copy_database, read.server) == ("shop_snapctl_0123abcd", "db:5432")
    (tmp_path / "bad.json").write_text('{"format": "custom"}')
    with pytest.raises(IntegrityError):
        pg_template.read_descriptor(tmp_path / "bad.json")
    with pytest.raises(ConfigurationError):
        pg_template.PostgresTemplateConnector(strategy="rsync")
