"""The PostgreSQL connector end to end: real server, real tools, snapctl run as a user would.

Every restore test changes the database after the dump (rows, tables, views, functions,
sequences) and then compares the complete digest with the one taken before the dump.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    ServerDatabase,
    clean_env,
    one_line,
    project_for,
    psql_admin,
    resign,
    uncompressed_artifact,
)

from snapctl.connectors.postgres import connection, programs
from snapctl.errors import ConfigurationError

# Objects that are not rows: the snapshot must bring them back, and the digest cannot see them.
SCHEMA_OBJECTS = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE FUNCTION tag_upper() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$;
CREATE TRIGGER tag_upper BEFORE INSERT ON shop_tag FOR EACH ROW
  WHEN (NEW.name LIKE 'upper:%') EXECUTE FUNCTION tag_upper();
CREATE VIEW cheap_products AS SELECT id, sku FROM shop_product WHERE price < 10;
CREATE TABLE labels (code citext PRIMARY KEY);
INSERT INTO labels VALUES ('Alpha'), ('beta');
"""

# What happens to a database after its snapshot: every kind of change a restore must undo.
CHANGES = """
UPDATE shop_customer SET name = 'changed' WHERE id = (SELECT min(id) FROM shop_customer);
DELETE FROM shop_orderline WHERE id = (SELECT max(id) FROM shop_orderline);
INSERT INTO shop_tag (name) SELECT 'extra ' || g FROM generate_series(1, 5) g;
SELECT setval(pg_get_serial_sequence('shop_product', 'id'), 5000);
CREATE TABLE after_dump (id serial PRIMARY KEY, v text);
INSERT INTO after_dump (v) VALUES ('x');
CREATE VIEW after_view AS SELECT * FROM shop_tag;
CREATE FUNCTION after_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
DROP VIEW cheap_products;
DROP TRIGGER tag_upper ON shop_tag;
DROP FUNCTION tag_upper();
DROP TABLE labels;
DROP EXTENSION citext;
"""

SCHEMA_STATE = """
SELECT json_build_object(
  'relations', (SELECT json_agg(relname ORDER BY relname) FROM pg_class
                WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v', 'S')),
  'functions', (SELECT json_agg(proname ORDER BY proname) FROM pg_proc
                WHERE pronamespace = 'public'::regnamespace
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = pg_proc.oid
                                  AND d.deptype = 'e')),
  'triggers', (SELECT json_agg(tgname ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal),
  'extensions', (SELECT json_agg(extname ORDER BY extname) FROM pg_extension))
"""


def user_sql(db: ServerDatabase, sql: str) -> str:
    """Run SQL as the database's own user, as the application would."""
    result = subprocess.run(
        ["psql", "-X", "-h", db.host, "-p", db.port or "5432", "-U", db.user, "-d", db.name,
         "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql],
        capture_output=True, text=True, timeout=60,
        env=clean_env(PGPASSWORD=db.password),
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    return result.stdout.strip()


def schema_state(db: ServerDatabase) -> object:
    return json.loads(psql_admin(SCHEMA_STATE, database=db.name))


def database_oid(name: str) -> str:
    return psql_admin(f"SELECT oid FROM pg_database WHERE datname = '{name}'").strip()


def leftover_databases(name: str) -> list[str]:
    """Temporary databases a restore of ``name`` made and did not remove (only this test's:
    other processes may be restoring their own databases meanwhile)."""
    return psql_admin(
        "SELECT datname FROM pg_database "
        f"WHERE datname ~ '^{name}_snapctl_(new|old)_[0-9a-f]{{8}}$'"
    ).split()


def corrupt_snapshot(project: Project, name: str, db: ServerDatabase) -> None:
    """Make one value of the (uncompressed) artifact invalid and re-sign the manifest, so the
    checksums pass and pg_restore fails part-way, while loading data."""
    snapshot = project.snapshots / name
    path = uncompressed_artifact(snapshot)
    uuid = user_sql(db, "SELECT uuid FROM shop_product ORDER BY id DESC LIMIT 1")
    data = path.read_bytes()
    assert data.count(uuid.encode()) == 1
    path.write_bytes(data.replace(uuid.encode(), b"z" + uuid.encode()[1:]))
    resign(snapshot)  # the same size: only the checksum changes


@contextlib.contextmanager
def open_session(db: ServerDatabase) -> Iterator[subprocess.Popen[bytes]]:
    """Another session of the application's role, in a transaction holding a lock."""
    session = subprocess.Popen(
        ["psql", "-X", "-h", db.host, "-U", db.user, "-d", db.name, "-c",
         "BEGIN; LOCK shop_tag; SELECT pg_sleep(60)"],
        env=clean_env(PGPASSWORD=db.password), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        locked = f"""SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                     WHERE d.datname = '{db.name}' AND l.mode = 'AccessExclusiveLock'"""
        deadline = time.monotonic() + 10
        while psql_admin(locked).strip() == "0" and time.monotonic() < deadline:
            time.sleep(0.05)
        yield session
    finally:
        session.kill()
        session.wait()


def assert_round_trip(project: Project) -> None:
    """Dump, change everything, restore while another session holds a lock: the digest and
    the schema are as before the dump, and the session was ended."""
    db = project.extra["db"]
    user_sql(db, SCHEMA_OBJECTS)
    before, schema_before = project.digest(), schema_state(db)
    project.dump()
    user_sql(db, CHANGES)
    with open_session(db) as session:
        result = project.snapctl("restore", "--yes")
        assert result.returncode == EXIT_OK, result.stderr
        assert session.wait(timeout=10) != 0  # terminated by the restore
    assert project.digest() == before
    assert schema_state(db) == schema_before
    assert user_sql(db, "SELECT count(*) FROM labels WHERE code = 'ALPHA'") == "1"  # citext
    # The application works afterwards: the next id is the one after the snapshot's.
    out = project.manage(
        "shell", "-c",
        "from shop.models import Tag; print(Tag.objects.create(name='upper:after').pk)",
    )  # fmt: skip
    assert int(out.split()[-1]) == before["sequences"]["public.shop_tag_id_seq"] + 1
    assert user_sql(db, "SELECT name FROM shop_tag ORDER BY id DESC LIMIT 1") == "UPPER:AFTER"


def assert_failed_restore_changes_nothing(project: Project) -> None:
    db = project.extra["db"]
    name = project.dump("--compress", "none")
    user_sql(db, "DELETE FROM shop_orderline; INSERT INTO shop_tag (name) VALUES ('kept')")
    changed, schema_changed = project.digest(), schema_state(db)
    corrupt_snapshot(project, name, db)
    result = project.snapctl("restore", "--yes", name)
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "uuid" in one_line(result.stderr)
    assert project.digest() == changed
    assert schema_state(db) == schema_changed
    assert leftover_databases(db.name) == []
    assert psql_admin(f"SELECT datallowconn FROM pg_database WHERE datname = '{db.name}'") == "t\n"


# --- the swap path (the template's user has CREATEDB) ----------------------------------------


def test_round_trip_is_exact(postgres_project: Project) -> None:
    postgres_project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = "0"  # whatever the size
    oid = database_oid(postgres_project.extra["db"].name)
    assert_round_trip(postgres_project)
    assert database_oid(postgres_project.extra["db"].name) != oid  # swapped in by rename
    assert leftover_databases(postgres_project.extra["db"].name) == []


@pytest.mark.parametrize("below", ["0", "16777216"], ids=["swap", "small-in-place"])
def test_failed_restore_leaves_database_as_it_was(postgres_project: Project, below: str) -> None:
    postgres_project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = below
    assert_failed_restore_changes_nothing(postgres_project)


def test_small_database_restores_in_place_when_that_is_exact(postgres_project: Project) -> None:
    """Below 16 MiB one transaction is faster than a new database and the swap; the result
    is the same as long as everything in the database is the role's own."""
    db = postgres_project.extra["db"]
    oid = database_oid(db.name)
    assert_round_trip(postgres_project)
    assert database_oid(db.name) == oid  # restored in place: no new database
    assert leftover_databases(db.name) == []
    # A function of another role would survive in place: then the restore swaps instead.
    postgres_project.dump()
    snapshot = postgres_project.digest()
    psql_admin("CREATE FUNCTION other_roles() RETURNS int LANGUAGE sql AS 'SELECT 1'", db.name)
    postgres_project.snapctl("restore", "--yes", check=True)
    assert database_oid(db.name) != oid
    assert postgres_project.digest() == snapshot
    assert (
        psql_admin("SELECT count(*) FROM pg_proc WHERE proname = 'other_roles'", db.name) == "0\n"
    )


def test_collation_of_the_role_restores_by_swap(postgres_project: Project) -> None:
    """A collation (Django's CreateCollation migration makes one) is of a kind the in-place
    path does not drop: its replay would fail on "already exists", and one made after the
    snapshot would survive. Such a database swaps, small or not, and restores exactly."""
    db = postgres_project.extra["db"]
    user_sql(db, "CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2',"
                 " deterministic = false)")  # fmt: skip
    before = postgres_project.digest()
    postgres_project.dump()
    user_sql(db, "CREATE COLLATION made_later (provider = icu, locale = 'de')")
    user_sql(db, "INSERT INTO shop_tag (name) VALUES ('after')")
    oid = database_oid(db.name)
    postgres_project.snapctl("restore", "--yes", check=True)
    assert database_oid(db.name) != oid  # swapped
    assert postgres_project.digest() == before
    collations = user_sql(
        db,
        "SELECT string_agg(collname, ',' ORDER BY collname) FROM pg_collation "
        "WHERE collnamespace = 'public'::regnamespace",
    )
    assert collations == "case_insensitive"


# --- the password and the connection ----------------------------------------------------------


def test_settings_become_the_childs_libpq_environment() -> None:
    settings = {
        "NAME": "shop", "USER": "app", "PASSWORD": "secret", "HOST": "/run/pg", "PORT": 5433,
        "OPTIONS": {"sslmode": "verify-full", "sslrootcert": "/ca.pem", "sslcert": "/c.pem",
                    "sslkey": "/k.pem", "passfile": "/pgpass", "connect_timeout": 3,
                    "pool": True, "server_side_binding": True},
    }  # fmt: skip
    env = connection.libpq_environment(settings)
    assert env == {
        "PGDATABASE": "shop", "PGUSER": "app", "PGHOST": "/run/pg", "PGPORT": "5433",
        "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/ca.pem", "PGSSLCERT": "/c.pem",
        "PGSSLKEY": "/k.pem", "PGPASSFILE": "/pgpass", "PGCONNECT_TIMEOUT": "3",
        "PGAPPNAME": os.environ.get("PGAPPNAME", "snapctl"),
    }  # fmt: skip
    service = connection.libpq_environment({"NAME": "", "OPTIONS": {"service": "shop"}})
    assert service["PGSERVICE"] == "shop" and "PGDATABASE" not in service
    with pytest.raises(ConfigurationError):
        connection.libpq_environment({"NAME": "", "OPTIONS": {}})
    with pytest.raises(ConfigurationError):
        connection.libpq_environment({"NAME": "x", "OPTIONS": {"sslpassword": "p"}})
    assert connection._passfile_line("a:b\\c") == "*:*:*:*:a\\:b\\\\c\n"


def _wrappers(directory: Path, log: Path) -> None:
    """pg_dump, pg_restore and psql that log ``<passfile mode> PGPASSFILE|PGPASSWORD|argv``
    and run the real program."""
    directory.mkdir()
    for tool in ("pg_dump", "pg_restore", "psql"):
        real = shutil.which(tool)
        assert real
        script = directory / tool
        script.write_text(
            "#!/bin/sh\n"
            f'mode=$(stat -c %a "$PGPASSFILE" 2>/dev/null)\n'
            'printf "%s %s|%s|%s\\036" "$mode" "$PGPASSFILE" "$PGPASSWORD" '
            f'"{tool} $*" >> "{log}"\n'
            f'exec "{real}" "$@"\n'
        )
        script.chmod(0o755)


def test_password_never_on_a_command_line(postgres_project: Project, tmp_path: Path) -> None:
    db = postgres_project.extra["db"]
    log = tmp_path / "calls.log"
    _wrappers(tmp_path / "bin", log)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    dumped = postgres_project.snapctl("dump", PATH=path)
    restored = postgres_project.snapctl("restore", "--yes", PATH=path)
    assert dumped.returncode == EXIT_OK and restored.returncode == EXIT_OK, (
        dumped.stderr + restored.stderr
    )
    calls = [call.split("|", 2) for call in log.read_text().split("\036")[:-1]]
    tools = {argv.split()[0] for _, _, argv in calls}
    # snapctl's own queries go through the driver; a small database restores in place, its
    # script replayed by psql.
    assert tools == {"pg_dump", "pg_restore", "psql"}
    assert not any(db.password in argv for _, _, argv in calls)
    assert db.password not in dumped.stdout + dumped.stderr + restored.stdout + restored.stderr
    # Every program that connects got the password through a passfile, removed afterwards.
    connecting = [c for c in calls if not c[2].endswith("--version") and " -l " not in c[2]]
    assert all(passfile.startswith("600 /") and not pw for passfile, pw, _ in connecting)
    assert not any(Path(passfile.split()[1]).exists() for passfile, _, _ in connecting)


class _RejectingServer(socketserver.ThreadingTCPServer):
    """Speaks just enough of the PostgreSQL protocol to ask for a password and reject it.

    The test server trusts 127.0.0.1, so a real wrong password would be accepted there.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RejectingHandler)
        self.passwords: list[str] = []


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


class _RejectingHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while True:
                body = _receive(sock, struct.unpack("!i", _receive(sock, 4))[0] - 4)
                if struct.unpack("!i", body[:4])[0] not in (80877103, 80877104):
                    break
                sock.sendall(b"N")  # no SSL, no GSS encryption
            params = body[4:].split(b"\0")
            user = dict(zip(params[::2], params[1::2], strict=False)).get(b"user", b"")
            sock.sendall(b"R" + struct.pack("!ii", 8, 3))  # cleartext password, please
            _receive(sock, 1)
            password = _receive(sock, struct.unpack("!i", _receive(sock, 4))[0] - 4)
            assert isinstance(self.server, _RejectingServer)
            self.server.passwords.append(password.rstrip(b"\0").decode())
            message = b'password authentication failed for user "' + user + b'"'
            fields = b"SFATAL\0VFATAL\0C28P01\0M" + message + b"\0\0"
            sock.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        except ConnectionError:
            pass


@pytest.fixture
def rejecting_server() -> Iterator[_RejectingServer]:
    server = _RejectingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_wrong_password_is_one_line_without_it(
    postgres_project: Project, rejecting_server: _RejectingServer
) -> None:
    name = postgres_project.dump()
    wrong = "wrong-" + secrets.token_urlsafe(8)
    env = {"EXAMPLE_DB_PORT": str(rejecting_server.server_address[1]),
           "EXAMPLE_DB_PASSWORD": wrong}  # fmt: skip
    for args in (("dump",), ("restore", "--yes", name)):
        result = postgres_project.snapctl(*args, **env)
        assert result.returncode in (EXIT_FAILED, EXIT_USAGE), result.stderr
        # On another port it is another database than the snapshot's, which restore says.
        said = [ln for ln in result.stderr.splitlines() if "was taken of" not in ln]
        line = one_line("\n".join(said))
        assert "password authentication failed" in line and wrong not in line
        assert wrong not in result.stderr
    assert rejecting_server.passwords and set(rejecting_server.passwords) == {wrong}


def test_server_down_is_one_line(postgres_project: Project) -> None:
    result = postgres_project.snapctl("dump", EXAMPLE_DB_PORT="1")
    assert result.returncode in (EXIT_FAILED, EXIT_USAGE)
    assert "refused" in one_line(result.stderr).lower()


# What an older pg_dump says to a newer server: pg_dump 15 and later, then 12 to 14.
OLD_PG_DUMP_SAYS = {
    "15+": "pg_dump: error: aborting because of server version mismatch\n"
    "pg_dump: detail: server version: {server}; pg_dump version: 15.6",
    "12-14": "pg_dump: error: server version: {server}; pg_dump version: 13.14\n"
    "pg_dump: error: aborting because of server version mismatch",
}


@pytest.mark.parametrize("says", OLD_PG_DUMP_SAYS.values(), ids=OLD_PG_DUMP_SAYS.keys())
def test_old_pg_dump_names_the_package(
    postgres_project: Project, tmp_path: Path, says: str
) -> None:
    server = psql_admin("SHOW server_version").strip()
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{says.format(server=server)}\nEOF\nexit 1\n")
    fake.chmod(0o755)
    result = postgres_project.snapctl("dump", PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert result.returncode == EXIT_USAGE
    server_major = psql_admin("SHOW server_version_num").strip()[:-4]
    assert f"install postgresql-client-{server_major}" in one_line(result.stderr)


# --- the in-place path (a user without CREATEDB) ---------------------------------------------


def test_without_createdb_round_trip_in_place(nocreatedb_project: Project) -> None:
    db = nocreatedb_project.extra["db"]
    oid = database_oid(db.name)
    assert_round_trip(nocreatedb_project)
    assert database_oid(nocreatedb_project.extra["db"].name) == oid  # restored in place


def test_without_createdb_failure_rolls_back(nocreatedb_project: Project) -> None:
    assert_failed_restore_changes_nothing(nocreatedb_project)


# --- the portable connector on PostgreSQL -----------------------------------------------------


def test_dumpdata_connector_round_trip(postgres_project: Project) -> None:
    db = postgres_project.extra["db"]
    before = postgres_project.digest()
    postgres_project.dump("--connector", "dumpdata")
    user_sql(db, CHANGES.split("CREATE TABLE")[0])  # data only: dumpdata knows only models
    result = postgres_project.snapctl("restore", "--yes")
    assert result.returncode == EXIT_OK, result.stderr
    assert postgres_project.digest() == before
    new_id = user_sql(db, "INSERT INTO shop_tag (name) VALUES ('n') RETURNING id")
    assert int(new_id) == before["sequences"]["public.shop_tag_id_seq"] + 1


def test_versions_come_from_the_archive_header(postgres_project: Project) -> None:
    """The snapshot records the server's and pg_dump's versions as pg_dump wrote them into
    the archive, without a query or a ``pg_dump --version`` of its own."""
    snapshot = json.loads(postgres_project.snapctl("dump", "--json", check=True).stdout)
    metadata = snapshot["databases"]["default"]["metadata"]
    assert metadata["server_version"] == psql_admin("SHOW server_version").strip()
    assert metadata["server_version_num"] == int(psql_admin("SHOW server_version_num"))
    major = psql_admin("SHOW server_version").split(".")[0]
    assert metadata["pg_dump_version"].startswith(f"pg_dump (PostgreSQL) {major}.")
    assert snapshot["databases"]["default"]["server_version"] == metadata["server_version"]


# --- a pg_restore that would let an archive's text run psql meta-commands --------------------


def old_pg_restore(tmp_path: Path) -> dict[str, str]:
    """PATH with a pg_restore first that calls itself 15.13, the last 15 before pg_restore
    began its SQL with \\restrict (CVE-2025-8714), and otherwise is the real one."""
    real = programs.client_program("pg_restore")
    fake = tmp_path / "old-client" / "pg_restore"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "pg_restore (PostgreSQL) 15.13"; exit 0; fi\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    return {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}


def test_an_unrestricting_pg_restore_never_replays_sql_through_psql(
    postgres_project: Project, tmp_path: Path
) -> None:
    """With CREATEDB the small snapshot is swapped in instead of replayed in place."""
    db = postgres_project.extra["db"]
    old = old_pg_restore(tmp_path)
    before = postgres_project.digest()
    name = postgres_project.dump()
    postgres_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")
    oid = database_oid(db.name)
    postgres_project.snapctl("restore", "--yes", name, check=True, **old)
    assert postgres_project.digest() == before
    assert database_oid(db.name) != oid  # swapped, not replayed in place


def test_without_createdb_an_unrestricting_pg_restore_is_refused(
    nocreatedb_project: Project, tmp_path: Path
) -> None:
    name = nocreatedb_project.dump()
    nocreatedb_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")
    before = nocreatedb_project.digest()
    result = nocreatedb_project.snapctl("restore", "--yes", name, **old_pg_restore(tmp_path))
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "CVE-2025-8714" in one_line(result.stderr) and "15.13" in result.stderr
    assert nocreatedb_project.digest() == before


@pytest.mark.parametrize(
    ("shown", "safe"),
    [
        ("pg_restore (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)", True),
        ("pg_restore (PostgreSQL) 15.13", False),
        ("pg_restore (PostgreSQL) 17.6", True),
        ("pg_restore (PostgreSQL) 12.22", False),
        ("pg_restore (PostgreSQL) 18.1", True),
        ("pg_restore (PostgreSQL) 19devel", True),
    ],
)
def test_which_pg_restore_restricts_meta_commands(tmp_path: Path, shown: str, safe: bool) -> None:
    fake = tmp_path / "pg_restore"
    fake.write_text(f"#!/bin/sh\necho '{shown}'\n")
    fake.chmod(0o755)
    assert programs.restricts_meta_commands(str(fake))[0] is safe


# --- other sessions: named before the load, announced when ended, waited for at most the
# --- lock timeout ---------------------------------------------------------------------------


def connect_as(db: ServerDatabase, application: str, *, admin: bool = False) -> Any:
    """A psycopg session on ``db`` named ``application``: of the project's role, or of the
    superuser, another role whose sessions the project's role may not end."""
    import psycopg

    if admin:
        return psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname=db.name,
            application_name=application,
        )  # fmt: skip
    return psycopg.connect(
        host=db.host, port=5432, user=db.user, password=db.password, dbname=db.name,
        application_name=application,
    )  # fmt: skip


def backend_pid(session: Any) -> int:
    return int(session.info.backend_pid)


def is_alive(session: Any) -> bool:
    import psycopg

    try:
        session.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    session.rollback()
    return True


def restore_logged(
    project: Project, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``snapctl restore --yes ARGS`` with the programs logged: the result and their argv."""
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    if not (tmp_path / "bin").exists():
        _wrappers(tmp_path / "bin", log)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    result = project.snapctl("restore", "--yes", *args, PATH=path)
    calls = log.read_text().split("\036")[:-1] if log.exists() else []
    return result, [call.split("|", 2)[2] for call in calls]


def loads(calls: list[str]) -> list[str]:
    """The calls that write the database: pg_restore into it, or psql replaying into it."""
    return [c for c in calls if c.startswith("psql") or " --dbname " in c]


def test_other_roles_session_fails_the_swap_before_the_load(
    postgres_project: Project, tmp_path: Path
) -> None:
    """A session snapctl may not end (another role's) would make the swap's rename fail, but
    only after the whole pg_restore: it is named at once instead, nothing loaded."""
    postgres_project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = "0"
    db = postgres_project.extra["db"]
    name = postgres_project.dump()
    user_sql(db, "INSERT INTO shop_tag (name) VALUES ('after')")
    changed = postgres_project.digest()
    with connect_as(db, "nightly report", admin=True) as other:
        result, calls = restore_logged(postgres_project, tmp_path, "--lock-timeout", "0", name)
        assert result.returncode == EXIT_FAILED, result.stderr
        line = one_line(result.stderr)
        pid = backend_pid(other)
        assert f"pid {pid} of role 'postgres' 'nightly report'" in line, line
        assert f"pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({pid})" in line
        assert "database unchanged" in line and "Traceback" not in result.stderr
        assert loads(calls) == []  # failed before the long part
        assert is_alive(other)
    assert postgres_project.digest() == changed
    assert leftover_databases(db.name) == []


def test_swap_waits_up_to_the_lock_timeout_for_other_roles_to_leave(
    postgres_project: Project,
) -> None:
    postgres_project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = "0"
    db = postgres_project.extra["db"]
    before = postgres_project.digest()
    name = postgres_project.dump()
    user_sql(db, "INSERT INTO shop_tag (name) VALUES ('after')")
    other = connect_as(db, "leaves soon", admin=True)
    # Late enough for the restore to find it there, even on a busy machine.
    leaving = threading.Timer(5, other.close)
    leaving.start()
    try:
        result = postgres_project.snapctl("restore", "--yes", "--lock-timeout", "30", name)
    finally:
        leaving.cancel()
        other.close()
    assert result.returncode == EXIT_OK, result.stderr
    assert (
        f"snapctl: waiting up to 30 s for 1 session that snapctl may not end to leave "
        f"'{db.name}' (pid " in result.stderr
    ), result.stderr
    assert postgres_project.digest() == before


def test_in_place_names_other_roles_holding_locks_after_the_lock_timeout(
    nocreatedb_project: Project,
) -> None:
    db = nocreatedb_project.extra["db"]
    name = nocreatedb_project.dump()
    user_sql(db, "INSERT INTO shop_tag (name) VALUES ('after')")
    changed = nocreatedb_project.digest()
    with connect_as(db, "report", admin=True) as other:
        other.execute("SELECT count(*) FROM shop_tag")  # AccessShareLock, transaction open
        started = time.monotonic()
        result = nocreatedb_project.snapctl("restore", "--yes", "--lock-timeout", "1", name)
        assert time.monotonic() - started < 30  # not the fixed 60 s of before
        assert result.returncode == EXIT_FAILED, result.stderr
        waited, failed = [line for line in result.stderr.splitlines() if line.strip()]
        pid = backend_pid(other)
        assert waited.startswith(
            "snapctl: waiting up to 1 s for 1 session that snapctl may not end to release its "
            f"locks on tables in '{db.name}'"
        )
        assert f"pid {pid} of role 'postgres' 'report'" in failed
        assert "locks on tables in" in failed and "database unchanged" in failed
        assert is_alive(other)
    assert nocreatedb_project.digest() == changed


@pytest.mark.parametrize("below", ["0", "16777216"], ids=["swap", "in-place"])
def test_ending_sessions_of_the_role_is_announced(postgres_project: Project, below: str) -> None:
    postgres_project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = below
    db = postgres_project.extra["db"]
    before = postgres_project.digest()
    postgres_project.dump()
    user_sql(db, "INSERT INTO shop_tag (name) VALUES ('after')")
    with connect_as(db, "manage.py shell") as session:
        session.execute("SELECT count(*) FROM shop_customer")  # idle in transaction
        pid = backend_pid(session)
        result = postgres_project.snapctl("restore", "--yes")
        assert result.returncode == EXIT_OK, result.stderr
        assert (
            f"snapctl: ending 1 other session of role '{db.user}' on '{db.name}' (pid {pid} "
            "'manage.py shell' from 127.0.0.1 idle in transaction for "
        ) in result.stderr, result.stderr
        assert "); they must reconnect" in result.stderr
        assert not is_alive(session)
    assert postgres_project.digest() == before


@pytest.mark.parametrize("below", ["0", "16777216"], ids=["swap", "in-place"])
def test_no_terminate_fails_instead_of_ending_sessions_of_the_role(
    postgres_project: Project, below: str
) -> None:
    postgres_project.env["EXAMPLE_PG_IN_PLACE_BELOW"] = below
    db = postgres_project.extra["db"]
    name = postgres_project.dump()
    user_sql(db, "INSERT INTO shop_tag (name) VALUES ('after')")
    changed = postgres_project.digest()
    with connect_as(db, "worker") as session:
        args = ("restore", "--yes", "--no-terminate", "--lock-timeout", "0", name)
        result = postgres_project.snapctl(*args)
        assert result.returncode == EXIT_FAILED, result.stderr
        line = one_line(result.stderr)
        assert f"2 other sessions of role '{db.user}'" not in line  # nothing of ours lingered
        assert f"1 other session of role '{db.user}' on '{db.name}'" in line
        assert f"pid {backend_pid(session)} 'worker' from 127.0.0.1 idle for " in line
        assert "--no-terminate" in line and "database unchanged" in line
        assert is_alive(session)
    assert postgres_project.digest() == changed
    assert leftover_databases(db.name) == []


def test_in_place_waits_for_locks_as_long_as_the_lock_timeout(
    postgres_project: Project, tmp_path: Path
) -> None:
    postgres_project.dump()
    result, calls = restore_logged(postgres_project, tmp_path, "--lock-timeout", "3")
    assert result.returncode == EXIT_OK, result.stderr
    (psql,) = [call for call in calls if call.startswith("psql")]
    assert "SET lock_timeout = '3000ms'" in psql and "60s" not in psql


# --- a database that does not exist ---------------------------------------------------------


def test_restore_creates_a_missing_database(postgres_project: Project) -> None:
    db = postgres_project.extra["db"]
    user_sql(db, SCHEMA_OBJECTS)
    snapshot, schema = postgres_project.digest(), schema_state(db)
    postgres_project.dump()
    psql_admin(f"DROP DATABASE {db.name} WITH (FORCE)")
    result = postgres_project.snapctl("restore", "--yes")
    assert result.returncode == EXIT_OK, result.stderr
    assert f"created database '{db.name}'" in result.stderr
    assert postgres_project.digest() == snapshot
    assert schema_state(db) == schema
    owner = f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db.name}'"
    assert psql_admin(owner).strip() == db.user


def test_a_missing_database_gets_the_snapshots_encoding_and_locale(
    postgres_template: ServerDatabase, tmp_path: Path
) -> None:
    name = f"snapctl_enc_{secrets.token_hex(4)}"
    db = ServerDatabase("postgresql", name, postgres_template.user, postgres_template.password,
                        port="5432")  # fmt: skip
    psql_admin(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' "
               f"LC_CTYPE 'C' OWNER {db.user}")  # fmt: skip
    try:
        project = project_for(db.env(), tmp_path / "snaps")
        user_sql(db, "CREATE TABLE words (w text); INSERT INTO words VALUES ('café'), ('Zoo')")
        project.dump()
        psql_admin(f"DROP DATABASE {name} WITH (FORCE)")
        project.snapctl("restore", "--yes", check=True)
        shown = psql_admin("SELECT pg_encoding_to_char(encoding), datcollate, datctype "
                           f"FROM pg_database WHERE datname = '{name}'")  # fmt: skip
        assert shown.strip() == "LATIN1|C|C"
        assert user_sql(db, "SELECT string_agg(w, ',' ORDER BY w) FROM words") == "Zoo,café"
    finally:
        psql_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_restore_without_createdb_into_a_missing_database_says_how(
    nocreatedb_project: Project,
) -> None:
    db = nocreatedb_project.extra["db"]
    nocreatedb_project.dump()
    psql_admin(f"DROP DATABASE {db.name} WITH (FORCE)")
    result = nocreatedb_project.snapctl("restore", "--yes")
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_line(result.stderr)
    assert f"'{db.name}'" in line and "does not exist" in line
    assert f"createdb -O {db.user} {db.name}" in line
    assert psql_admin(f"SELECT count(*) FROM pg_database WHERE datname = '{db.name}'") == "0\n"


def test_dump_of_a_missing_database_is_a_configuration_error(postgres_project: Project) -> None:
    db = postgres_project.extra["db"]
    psql_admin(f"DROP DATABASE {db.name} WITH (FORCE)")
    result = postgres_project.snapctl("dump")
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_line(result.stderr)
    assert f"database '{db.name}' of 'default' does not exist" in line
    assert f"createdb -O {db.user} {db.name}" in line and "NAME" in line
    assert postgres_project.store_entries() == []
