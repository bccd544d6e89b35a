"""Shared fixtures: the example project on SQLite, PostgreSQL and MariaDB, run as a user would.

Server fixtures create their own database and a user with a password, and drop both
afterwards. Without a server they skip, except under CI=true, where they fail: CI must never
pass by skipping them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
IN_CI = os.environ.get("CI") == "true"


@dataclass
class FaultLedger:
    """What the fault-injection tests did, printed as one line at the end of the run."""

    injected: int = 0
    checked: int = 0
    bytes_lost: int = 0

    def check(self, expected: object, actual: object) -> bool:
        """Count one snapshot or database checked after a fault; return whether it held."""
        self.checked += 1
        if expected == actual:
            return True
        self.bytes_lost += len(json.dumps(expected, sort_keys=True, default=str))
        return False


LEDGER = FaultLedger()


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


# A test using one of these needs a server: it belongs to the server tier.
SERVER_FIXTURES = frozenset({"postgres_server", "mariadb_server", "s3_endpoint"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tiers: servers (by the fixtures a test uses), faults (by its file)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
        if item.path.name.startswith("test_faults"):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LEDGER.injected or LEDGER.checked:
        terminalreporter.write_line(
            f"fault injection: {LEDGER.injected} faults injected, {LEDGER.checked} snapshots "
            f"and databases checked, bytes lost: {LEDGER.bytes_lost}"
        )


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point snapctl elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("EXAMPLE_", "SNAPCTL_", "DJANGO_", "PG", "MYSQL"))
    }
    env.update(extra)
    return env


@dataclass
class Project:
    """The example project pointed at one database, with its own snapshot directory."""

    env: dict[str, str]
    snapshots: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def snapctl(
        self, *args: str, input: str | None = None, check: bool = False, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m snapctl ARGS`` in the example directory, as a user would."""
        result = subprocess.run(
            [sys.executable, "-m", "snapctl", *args],
            cwd=EXAMPLE,
            env={**self.env, **env},
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"snapctl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=EXAMPLE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def digest(self) -> dict[str, Any]:
        """Every table's rows and the sequences, canonical, for exact comparison."""
        return json.loads(self.manage("table_digest"))  # type: ignore[no-any-return]

    def store_entries(self) -> list[str]:
        """What the snapshot directory holds, but its lock file: snapshots and leftovers."""
        if not self.snapshots.is_dir():
            return []
        return sorted(p.name for p in self.snapshots.iterdir() if p.name != ".lock")

    def dump(self, *args: str) -> str:
        """Take a snapshot and return its name."""
        return self.snapctl("dump", *args, check=True).stdout.strip()


def _project(env: dict[str, str], snapshots: Path) -> Project:
    return Project(env=clean_env(**env, SNAPCTL_DIR=str(snapshots)), snapshots=snapshots)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, seeded example database, made once and copied per test."""
    base = tmp_path_factory.mktemp("sqlite-template")
    path = base / "db.sqlite3"
    project = _project({"EXAMPLE_DB_NAME": str(path)}, base / "snaps")
    project.manage("migrate", "--no-input", "-v0")
    project.manage("seed_shop")
    return path


@pytest.fixture
def sqlite_project(tmp_path: Path, sqlite_template: Path) -> Project:
    path = tmp_path / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return _project({"EXAMPLE_DB_NAME": str(path)}, tmp_path / "snaps")


# --- servers ---------------------------------------------------------------------------


def server_unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a server test must never pass by skipping there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: server tests must run)")
    pytest.skip(reason)


def _admin(argv: list[str]) -> str:
    """Run a server's client as its superuser; its output, or RuntimeError with its error."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=clean_env())
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip())
    return result.stdout


def psql_admin(sql: str, database: str = "postgres") -> str:
    return _admin(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
         "-Atqc", sql]
    )  # fmt: skip


def mariadb_admin(sql: str) -> str:
    binary = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    return _admin([binary, "-uroot", "-h127.0.0.1", "-P3306", "-N", "-B", "-e", sql])


@dataclass(frozen=True)
class ServerDatabase:
    """A database and its owner, made by a test."""

    engine: str
    name: str
    user: str
    password: str
    host: str = "127.0.0.1"
    port: str = ""

    def env(self) -> dict[str, str]:
        return {
            "EXAMPLE_DB_ENGINE": self.engine,
            "EXAMPLE_DB_NAME": self.name,
            "EXAMPLE_DB_USER": self.user,
            "EXAMPLE_DB_PASSWORD": self.password,
            "EXAMPLE_DB_HOST": self.host,
            "EXAMPLE_DB_PORT": self.port,
        }


def fill_example(db: ServerDatabase) -> None:
    """Migrate the example project into a server database and seed it."""
    project = _project(db.env(), Path("/nonexistent"))
    project.manage("migrate", "--no-input", "-v0")
    project.manage("seed_shop")


def _new_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


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
    user = _new_name("snapctl_tpl")
    password = "pw-" + secrets.token_urlsafe(12)
    psql_admin(f"CREATE ROLE {user} LOGIN CREATEDB PASSWORD '{password}'")
    db = ServerDatabase("postgresql", _new_name("snapctl_tpl"), user, password, port="5432")
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
    name = _new_name("snapctl_t")
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
    project = _project(postgres_db.env(), tmp_path / "snaps")
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
        _new_name("snapctl_t"),
        _new_name("snapctl_u"),
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
    project = _project(mariadb_db.env(), tmp_path / "snaps")
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
        project = _project(db.env(), tmp_path / "snaps")
        project.extra["db"] = db
        yield project
    finally:
        psql_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        psql_admin(f"DROP ROLE IF EXISTS {role}")
