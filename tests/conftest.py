"""Fixtures and the hooks that mark the tiers; what tests share besides is in helpers.py.

The example project runs on SQLite, PostgreSQL and MariaDB as a user would. Server fixtures
create their own database and a user with a password, and drop both afterwards. Without a
server they skip, except under CI=true, where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    FaultLedger,
    Project,
    ServerDatabase,
    fill_example,
    mariadb_admin,
    new_name,
    project_for,
    psql_admin,
    server_unavailable,
)

LEDGER = FaultLedger()


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test records prepared copies in its own directory, never the user's."""
    monkeypatch.setenv("SNAPCTL_STATE_DIR", str(tmp_path / "snapctl-state"))


@pytest.fixture
def faults() -> FaultLedger:
    return LEDGER


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist, each worker hands its counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fault_ledger"] = [LEDGER.injected, LEDGER.checked, LEDGER.bytes_lost]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    injected, checked, lost = getattr(node, "workeroutput", {}).get("fault_ledger", [0, 0, 0])
    LEDGER.injected += injected
    LEDGER.checked += checked
    LEDGER.bytes_lost += lost


# The tiers (docs/testing.md): a test is in the server tier if it uses one of these...
SERVER_FIXTURES = frozenset({"postgres_server", "mariadb_server", "s3_endpoint"})
# ...and in the end-to-end tier if it runs snapctl or manage.py on the example project's
# SQLite database through one of these (modules that start processes themselves say so with
# ``pytestmark = pytest.mark.e2e``). What is in neither, nor in a test_faults file, is the
# fast tier: in-process only.
E2E_FIXTURES = frozenset({"sqlite_project", "sqlite_template"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tiers: servers and e2e by the fixtures a test uses, faults by its file."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERVER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.servers)
        if E2E_FIXTURES & fixtures:
            item.add_marker(pytest.mark.e2e)
        if item.path.name.startswith("test_faults"):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LEDGER.injected or LEDGER.checked:
        terminalreporter.write_line(
            f"fault injection: {LEDGER.injected} faults injected, {LEDGER.checked} snapshots "
            f"and databases checked, bytes lost: {LEDGER.bytes_lost}"
        )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, seeded example database, made once and copied per test."""
    base = tmp_path_factory.mktemp("sqlite-template")
    path = base / "db.sqlite3"
    project = project_for({"EXAMPLE_DB_NAME": str(path)}, base / "snaps")
    project.manage("migrate", "--no-input", "-v0")
    project.manage("seed_shop")
    return path


@pytest.fixture
def sqlite_project(tmp_path: Path, sqlite_template: Path) -> Project:
    path = tmp_path / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return project_for({"EXAMPLE_DB_NAME": str(path)}, tmp_path / "snaps")


# --- servers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> None:
    if not shutil.which("psql"):
        server_unavailable("psql is not installed")
    try:
        psql_admin("SELECT 1")
    except (RuntimeError, OSError) as exc:
        server_unavailable(f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}")


@pytest.fixture(scope="session")
def postgres_template(postgres_server: None) -> Iterator[ServerDatabase]:
    """A migrated, seeded database owned by a password user, cloned per test."""
    user = new_name("snapctl_tpl")
    password = "pw-" + secrets.token_urlsafe(12)
    psql_admin(f"CREATE ROLE {user} LOGIN CREATEDB PASSWORD '{password}'")
    db = ServerDatabase("postgresql", new_name("snapctl_tpl"), user, password, port="5432")
    psql_admin(f"CREATE DATABASE {db.name} OWNER {user}")
    try:
        fill_example(db)
        yield db
    finally:
        psql_admin(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")
        for row in psql_admin(
            f"SELECT datname FROM pg_database WHERE datdba = "
            f"(SELECT oid FROM pg_roles WHERE rolname = '{user}')"
        ).split():
            psql_admin(f'DROP DATABASE IF EXISTS "{row}" WITH (FORCE)')
        psql_admin(f"DROP ROLE IF EXISTS {user}")


@pytest.fixture
def postgres_db(postgres_template: ServerDatabase) -> Iterator[ServerDatabase]:
    """A fresh copy of the seeded template database, owned by the template's user."""
    name = new_name("snapctl_t")
    psql_admin(
        f"CREATE DATABASE {name} TEMPLATE {postgres_template.name} OWNER {postgres_template.user}"
    )
    try:
        yield ServerDatabase(
            "postgresql", name, postgres_template.user, postgres_template.password, port="5432"
        )
    finally:
        psql_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_project(tmp_path: Path, postgres_db: ServerDatabase) -> Project:
    project = project_for(postgres_db.env(), tmp_path / "snaps")
    project.extra["db"] = postgres_db
    return project


@pytest.fixture(scope="session")
def mariadb_server() -> None:
    if not (shutil.which("mariadb") or shutil.which("mysql")):
        server_unavailable("the mariadb client is not installed")
    try:
        mariadb_admin("SELECT 1")
    except (RuntimeError, OSError) as exc:
        server_unavailable(f"MariaDB is not reachable on 127.0.0.1:3306: {exc}")


@pytest.fixture
def mariadb_db(mariadb_server: None) -> Iterator[ServerDatabase]:
    """A new, migrated, seeded database with its own password user."""
    db = ServerDatabase(
        "mysql",
        new_name("snapctl_t"),
        new_name("snapctl_u"),
        "pw-" + secrets.token_urlsafe(12),
        port="3306",
    )
    # The MySQL connector loads a restore into scratch databases `<NAME>_snapctl_<random>`
    # beside the live one, so the user also needs ALL on that pattern (LIKE-escaped).
    scratch = db.name.replace("_", "\\_") + "\\_snapctl\\_%"
    mariadb_admin(
        f"CREATE DATABASE {db.name} CHARACTER SET utf8mb4; "
        f"CREATE USER '{db.user}'@'%' IDENTIFIED BY '{db.password}'; "
        f"CREATE USER '{db.user}'@'localhost' IDENTIFIED BY '{db.password}'; "
        f"GRANT ALL ON {db.name}.* TO '{db.user}'@'%'; "
        f"GRANT ALL ON {db.name}.* TO '{db.user}'@'localhost'; "
        f"GRANT ALL ON `{scratch}`.* TO '{db.user}'@'%'; "
        f"GRANT ALL ON `{scratch}`.* TO '{db.user}'@'localhost'; "
        f"GRANT PROCESS, RELOAD ON *.* TO '{db.user}'@'%'; "
        f"GRANT PROCESS, RELOAD ON *.* TO '{db.user}'@'localhost';"
    )
    try:
        fill_example(db)
        yield db
    finally:
        mariadb_admin(
            f"DROP DATABASE IF EXISTS {db.name}; DROP USER IF EXISTS '{db.user}'@'%'; "
            f"DROP USER IF EXISTS '{db.user}'@'localhost';"
        )


@pytest.fixture
def mariadb_project(tmp_path: Path, mariadb_db: ServerDatabase) -> Project:
    project = project_for(mariadb_db.env(), tmp_path / "snaps")
    project.extra["db"] = mariadb_db
    return project


REOWN_TABLES = """
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace
           AND relkind IN ('r', 'v') LOOP
    EXECUTE format('ALTER TABLE %I OWNER TO {role}', r.relname);
  END LOOP;
END $$
"""


@pytest.fixture
def nocreatedb_project(tmp_path: Path, postgres_template: ServerDatabase) -> Iterator[Project]:
    """A copy of the seeded database owned, with all its tables, by a role without CREATEDB."""
    role = f"snapctl_nocd_{secrets.token_hex(4)}"
    password = "pw-" + secrets.token_urlsafe(12)
    name = f"snapctl_nocd_{secrets.token_hex(4)}"
    psql_admin(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD '{password}'")
    try:
        psql_admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template.name} OWNER {role}")
        psql_admin(REOWN_TABLES.replace("{role}", role), database=name)
        # Over the unix socket when there is one, to cover HOST as a directory too.
        host = next(
            (d for d in ("/var/run/postgresql", "/tmp") if Path(d, ".s.PGSQL.5432").exists()),
            "127.0.0.1",
        )
        db = ServerDatabase("postgresql", name, role, password, host=host, port="5432")
        project = project_for(db.env(), tmp_path / "snaps")
        project.extra["db"] = db
        yield project
    finally:
        psql_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        psql_admin(f"DROP ROLE IF EXISTS {role}")
