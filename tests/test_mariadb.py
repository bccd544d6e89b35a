"""The MySQL/MariaDB connector end to end: real server, real tools, snapctl run as a user would.

Restore tests change the database after the dump (rows, tables, views, triggers, routines) and
compare the complete digest, AUTO_INCREMENT counters included, with the one taken before.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXAMPLE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    ServerDatabase,
    clean_env,
    mariadb_admin,
    one_line,
    resign,
    uncompressed_artifact,
)

from snapctl.connectors.mysql.option_file import option_file_text

# Objects that are not rows: the snapshot must bring them back; the digest cannot see them.
SCHEMA_OBJECTS = """
CREATE VIEW cheap_products AS SELECT id, sku FROM shop_product WHERE price < 10;
CREATE TRIGGER tag_trim BEFORE INSERT ON shop_tag FOR EACH ROW SET NEW.name = TRIM(NEW.name);
CREATE PROCEDURE count_tags() SELECT COUNT(*) FROM shop_tag;
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN 2 * x;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM shop_tag WHERE id < 0;
CREATE TABLE labels (code VARCHAR(20) PRIMARY KEY, note TEXT) CHARACTER SET utf8mb4;
INSERT INTO labels VALUES ('été', '🚀 rocket'), ('b', NULL);
"""

# What happens to a database after its snapshot: every kind of change a restore must undo.
CHANGES = """
UPDATE shop_customer SET name = 'changed 🙂' WHERE id = 1;
DELETE FROM shop_orderline WHERE id = (SELECT * FROM (SELECT MAX(id) FROM shop_orderline) m);
INSERT INTO shop_tag (name) VALUES ('extra 1'), ('extra 2'), ('extra 3');
ALTER TABLE shop_product AUTO_INCREMENT = 5000;
CREATE TABLE after_dump (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT);
INSERT INTO after_dump (v) VALUES ('x');
CREATE VIEW after_view AS SELECT * FROM shop_tag;
CREATE TRIGGER after_trigger BEFORE INSERT ON shop_order FOR EACH ROW SET NEW.total = 0;
CREATE PROCEDURE after_proc() SELECT 1;
DROP VIEW cheap_products;
DROP TRIGGER tag_trim;
DROP PROCEDURE count_tags;
DROP FUNCTION twice;
DROP EVENT nightly;
DROP TABLE labels;
CREATE VIEW labels AS SELECT 1 AS code;
CREATE TABLE cheap_products (id INT PRIMARY KEY);
"""

OBJECTS = """
SELECT 'table', table_name, table_type FROM information_schema.tables
  WHERE table_schema = '{db}'
UNION ALL SELECT 'view', table_name, view_definition FROM information_schema.views
  WHERE table_schema = '{db}'
UNION ALL SELECT 'trigger', trigger_name, CONCAT(event_object_table, ':', action_statement)
  FROM information_schema.triggers WHERE trigger_schema = '{db}'
UNION ALL SELECT routine_type, routine_name, routine_definition FROM information_schema.routines
  WHERE routine_schema = '{db}'
UNION ALL SELECT 'event', event_name, CONCAT(status, ':', event_definition)
  FROM information_schema.events WHERE event_schema = '{db}'
UNION ALL SELECT 'fk', constraint_name, CONCAT(table_name, '->', referenced_table_name)
  FROM information_schema.referential_constraints WHERE constraint_schema = '{db}'
"""


def user_sql(db: ServerDatabase, sql: str, host: str = "127.0.0.1") -> str:
    """Run SQL as the database's own user (the DEFINER of what it creates), as the app would."""
    binary = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    result = subprocess.run(
        [binary, "--default-character-set=utf8mb4", "-u", db.user, "-h", host,
         "-P", db.port or "3306", "-N", "-B", db.name],
        input=sql, capture_output=True, text=True, timeout=60,
        env=clean_env(MYSQL_PWD=db.password),
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    return result.stdout.strip()


def schema_objects(db: ServerDatabase) -> list[str]:
    return sorted(mariadb_admin(OBJECTS.format(db=db.name)).splitlines())


def leftover_databases(db: ServerDatabase) -> list[str]:
    return mariadb_admin(f"SHOW DATABASES LIKE '{db.name}%snapctl%'").split()


def next_tag_id(project: Project) -> int:
    """Insert a tag through Django and return its id: the counter must be usable."""
    code = "from shop.models import Tag; print(Tag.objects.create(name='  after  ').pk)"
    return int(project.manage("shell", "-c", code).split()[-1])  # after the shell's banner


def insert_before_last(project: Project, name: str, edit: bytes, marker: bytes) -> None:
    path = uncompressed_artifact(project.snapshots / name)
    data = path.read_bytes()
    at = data.rindex(marker)
    path.write_bytes(data[:at] + edit + data[at:])
    resign(project.snapshots / name)


def test_round_trip_is_exact(mariadb_project: Project) -> None:
    db = mariadb_project.extra["db"]
    user_sql(db, SCHEMA_OBJECTS)
    before, objects = mariadb_project.digest(), schema_objects(db)
    tags = json.dumps(before["tables"]["shop_tag"], ensure_ascii=False)
    assert "🔥 hot" in tags  # utf8mb4 text
    assert '\\"nested\\"' in json.dumps(before["tables"]["shop_customer"])  # JSON
    images = json.dumps(before["tables"]["shop_product"])
    assert bytes(range(256)).hex() in images  # every byte value
    name = mariadb_project.dump("--json")
    metadata = json.loads(name)["databases"]["default"]["metadata"]
    assert metadata["format"] == "sql" and "MariaDB" in metadata["server_version"]
    assert metadata["dump_tool_version"]

    user_sql(db, CHANGES)
    assert mariadb_project.digest() != before
    mariadb_project.snapctl("restore", "--yes", check=True)

    assert mariadb_project.digest() == before
    assert schema_objects(db) == objects
    assert leftover_databases(db) == []
    tag_id = next_tag_id(mariadb_project)
    assert tag_id == before["sequences"]["shop_tag"]
    # The restored trigger runs: it trimmed the name.
    assert user_sql(db, f"SELECT CONCAT('[', name, ']') FROM shop_tag WHERE id = {tag_id}") == (
        "[after]"
    )
    assert user_sql(db, "SELECT twice(21)") == "42"


def test_failed_load_leaves_database_unchanged(mariadb_project: Project) -> None:
    db = mariadb_project.extra["db"]
    user_sql(db, SCHEMA_OBJECTS)
    name = json.loads(mariadb_project.dump("--json", "--compress", "none"))["name"]
    # Fails after every table is loaded, near the end of the script.
    insert_before_last(
        mariadb_project, name, b"INSERT INTO shop_tag (id, name) VALUES (1, 'dup');\n",
        b"/*!40103 SET TIME_ZONE",
    )  # fmt: skip
    user_sql(db, CHANGES)
    changed, objects = mariadb_project.digest(), schema_objects(db)

    result = mariadb_project.snapctl("restore", "--yes")

    assert result.returncode == EXIT_FAILED, result.stderr
    line = one_line(result.stderr)
    assert "Duplicate entry" in line and "unchanged" in line
    assert mariadb_project.digest() == changed
    assert schema_objects(db) == objects
    assert leftover_databases(db) == []


def test_failure_after_swap_puts_previous_database_back(mariadb_project: Project) -> None:
    """A view that can be created in the scratch database but not in the live one makes the
    step after the RENAME fail: the RENAME is undone and the previous tables come back."""
    db = mariadb_project.extra["db"]
    user_sql(db, "CREATE VIEW cheap_products AS SELECT id FROM shop_product WHERE price < 10")
    mariadb_project.dump()
    user_sql(db, CHANGES.split("CREATE VIEW")[0] + "DROP VIEW cheap_products;")
    changed, objects = mariadb_project.digest(), schema_objects(db)
    for host in ("%", "localhost"):
        mariadb_admin(f"REVOKE CREATE VIEW ON {db.name}.* FROM '{db.user}'@'{host}'")

    result = mariadb_project.snapctl("restore", "--yes")

    assert result.returncode == EXIT_FAILED, result.stderr
    line = one_line(result.stderr)
    assert "recreating views" in line and "was put back as it was" in line  # after the RENAME
    assert mariadb_project.digest() == changed
    assert schema_objects(db) == objects
    assert leftover_databases(db) == []


def test_restore_recreates_a_dropped_database(mariadb_project: Project) -> None:
    db = mariadb_project.extra["db"]
    before = mariadb_project.digest()
    mariadb_project.dump()
    mariadb_admin(f"DROP DATABASE {db.name}")
    mariadb_project.snapctl("restore", "--yes", check=True)
    assert mariadb_project.digest() == before
    assert leftover_databases(db) == []


def write_wrappers(directory: Path, log: Path) -> None:
    """Scripts named like the client tools that log their name and argv, one NUL-separated
    line per call, then run the real tool."""
    directory.mkdir()
    for tool in ("mariadb-dump", "mysqldump", "mariadb", "mysql"):
        real = shutil.which(tool)
        if real is None:
            continue
        script = directory / tool
        script.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\0' {tool} \"$@\" >> '{log}'\n"
            f"printf '\\n' >> '{log}'\n"
            f'exec "{real}" "$@"\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)


def logged_calls(log: Path) -> list[list[str]]:
    """What the wrappers logged: each call's program name, then its arguments."""
    if not log.exists():
        return []
    return [line.split("\0")[:-1] for line in log.read_text().splitlines() if line]


def test_password_never_on_a_command_line(mariadb_project: Project, tmp_path: Path) -> None:
    db = mariadb_project.extra["db"]
    # Characters an option file could misread: quotes, comment signs, spaces, backslashes.
    password = "p\"w#1 'x\\y;$z " + db.password
    user_sql(db, "CREATE VIEW cheap_products AS SELECT id FROM shop_product WHERE price < 10; "
                 "CREATE TRIGGER tag_trim BEFORE INSERT ON shop_tag FOR EACH ROW "
                 "SET NEW.name = TRIM(NEW.name)")  # fmt: skip
    for host in ("%", "localhost"):
        mariadb_admin(
            f"ALTER USER '{db.user}'@'{host}' IDENTIFIED BY "
            f"'{password.replace(chr(92), chr(92) * 2).replace(chr(39), chr(39) * 2)}'"
        )
    logs = {command: tmp_path / f"{command}.log" for command in ("dump", "restore")}
    env = {"EXAMPLE_DB_PASSWORD": password, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}

    write_wrappers(tmp_path / "bin", logs["dump"])
    dump = mariadb_project.snapctl("dump", check=True, **env)
    shutil.rmtree(tmp_path / "bin")
    write_wrappers(tmp_path / "bin", logs["restore"])
    restore = mariadb_project.snapctl("restore", "--yes", check=True, **env)

    calls = {command: logged_calls(log) for command, log in logs.items()}
    for argv in calls["dump"] + calls["restore"]:
        assert argv[1].startswith("--defaults-extra-file="), argv
        assert not Path(argv[1].split("=", 1)[1]).exists()  # removed afterwards
    for text in (*(log.read_text() for log in logs.values()), dump.stdout, dump.stderr,
                 restore.stdout, restore.stderr):  # fmt: skip
        assert password not in text and db.password not in text
    # The driver asks the server everything else: the dump program's version is asked once,
    # by the dump, whose flags depend on it; the client program only loads scripts.
    version, dumped = calls["dump"]
    assert version[2:] == ["--version"] and "--version" not in dumped
    assert version[0] == dumped[0] and dumped[0] in ("mariadb-dump", "mysqldump")
    assert not [argv for argv in calls["restore"] if "--version" in argv]
    loads = [argv for argv in calls["restore"] if argv[0] in ("mariadb", "mysql")]
    assert loads and all(any(a.startswith("--database=") for a in argv) for argv in loads)
    # The objects of both databases (a view, a trigger) read by the dump program, the
    # snapshot loaded (one script, or its tables, rows and the rest), then the swap.
    assert 4 + 1 + 1 <= len(calls["restore"]) <= 4 + 3 + 1, calls["restore"]


def test_unix_socket_host(mariadb_project: Project) -> None:
    db = mariadb_project.extra["db"]
    socket_path = mariadb_admin("SELECT @@socket").strip()
    if not Path(socket_path).exists():
        pytest.skip(f"the server's socket {socket_path} is not on this machine")
    env = {"EXAMPLE_DB_HOST": socket_path, "EXAMPLE_DB_PORT": ""}
    before = mariadb_project.digest()
    mariadb_project.snapctl("dump", check=True, **env)
    user_sql(db, CHANGES.split("CREATE VIEW")[0])  # rows and a table: no routines, whose
    # DEFINER (user@%, made over TCP) the socket account (user@localhost) may not read
    mariadb_project.snapctl("restore", "--yes", check=True, **env)
    assert mariadb_project.digest() == before


def test_wrong_password_and_server_down_are_one_line(mariadb_project: Project) -> None:
    secret = "wrong-secret-Zq81"
    for command in (("dump",), ("restore", "--yes")):
        if command[0] == "restore":
            mariadb_project.dump()
        result = mariadb_project.snapctl(*command, EXAMPLE_DB_PASSWORD=secret)
        assert result.returncode in (EXIT_FAILED, EXIT_USAGE), result.stderr
        line = one_line(result.stderr)
        assert secret not in line and "Access denied" in line, line

    name = mariadb_project.dump()  # by name: 'latest' means a snapshot of port 1's database
    for command in (("dump",), ("restore", "--yes", name)):  # nothing listens on port 1
        result = mariadb_project.snapctl(*command, EXAMPLE_DB_PORT="1")
        assert result.returncode in (EXIT_FAILED, EXIT_USAGE), result.stderr
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "Can't connect" in errors[0], result.stderr


def test_dumpdata_connector_round_trip_and_atomic_failure(mariadb_project: Project) -> None:
    db = mariadb_project.extra["db"]
    before = mariadb_project.digest()
    name = json.loads(mariadb_project.dump("--connector", "dumpdata", "--json"))["name"]
    data_changes = CHANGES.split("CREATE TABLE")[0].replace("ALTER TABLE shop_product", "-- ")
    user_sql(db, data_changes)  # dumpdata knows only the models' rows
    mariadb_project.snapctl("restore", "--yes", check=True)
    assert mariadb_project.digest() == before
    assert next_tag_id(mariadb_project) == before["sequences"]["shop_tag"]

    # A duplicate unique name as the last object: the load fails after emptying every table.
    bad = mariadb_project.dump("--connector", "dumpdata", "--compress", "none")
    duplicate = {"model": "shop.tag", "pk": 99999, "fields": {"name": "new"}}
    with open(uncompressed_artifact(mariadb_project.snapshots / bad), "a") as handle:
        handle.write(json.dumps(duplicate) + "\n")
    resign(mariadb_project.snapshots / bad)
    user_sql(db, data_changes)
    changed = mariadb_project.digest()
    result = mariadb_project.snapctl("restore", bad, "--yes")
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "rolled back" in one_line(result.stderr)
    assert mariadb_project.digest() == changed
    assert name != bad


def test_option_file_is_read_as_written(tmp_path: Path) -> None:
    """The tools read back exactly the settings given, read_default_file first and the
    settings over it, whatever characters the password holds."""
    binary = shutil.which("mariadb") or shutil.which("mysql")
    if binary is None:
        pytest.skip("the mariadb client is not installed")
    project_file = tmp_path / "my.cnf"
    project_file.write_text("[client]\nuser=from_file\nport=3307\nsocket=/from/file.sock\n")
    password = "p\"w#1 'x\\y;$z\t"
    settings = {
        "NAME": "app", "USER": "app_user", "PASSWORD": password, "HOST": "/run/app.sock",
        "PORT": "", "OPTIONS": {"read_default_file": str(project_file), "charset": "utf8",
                                "ssl": {"ca": "/etc/ca.pem"}},
    }  # fmt: skip
    defaults = tmp_path / "extra.cnf"
    defaults.write_text(option_file_text(settings))
    result = subprocess.run(
        [binary, f"--defaults-extra-file={defaults}", "--print-defaults"],
        capture_output=True, text=True, check=True, env=clean_env(),
    )  # fmt: skip
    printed = result.stdout.split("arguments:", 1)[1].split()
    last = {}
    for argument in printed:
        key, _, value = argument.partition("=")
        last[key] = value  # later values win, as the tools apply them
    assert last["--user"] == "app_user" and last["--port"] == "3307"
    assert last["--socket"] == "/run/app.sock" and last["--ssl-ca"] == "/etc/ca.pem"
    assert last["--default-character-set"] == "utf8mb4"  # utf8 (mb3) would lose emoji
    assert f"--password={password}" in result.stdout


PARALLEL_SETTINGS = """
from example_project.settings import *  # noqa: F403

from snapctl import MySQLConnector

SNAPSHOTS = {"DATABASE_CONNECTORS": {"default": MySQLConnector(jobs=3)}}
"""


def parallel_settings(tmp_path: Path) -> list[str]:
    """Settings whose connector loads rows with three sessions, whatever the machine's cores."""
    settings = tmp_path / "settings_dir"
    settings.mkdir()
    (settings / "parallel_settings.py").write_text(PARALLEL_SETTINGS)
    return ["--settings", "parallel_settings", "--pythonpath", str(settings)]


def parallel_project(project: Project, tmp_path: Path) -> list[str]:
    """Those settings, and a database whose two largest tables each get a session of their
    own (a 23 MB script: large enough to be split)."""
    project.manage("bulk_fill", "--rows", "20000")
    return parallel_settings(tmp_path)


def loads_into_scratch(log: Path, programs: tuple[str, ...] = ()) -> int:
    """The logged calls of ``programs`` (any, by default) that work on a scratch database."""
    return sum(
        1
        for argv in logged_calls(log)
        if (not programs or argv[0] in programs) and any("_snapctl_" in arg for arg in argv)
    )


def dump_change_and_restore(project: Project, options: list[str], tmp_path: Path) -> Path:
    """Dump, apply CHANGES, restore with the client programs logging their calls; return
    the log."""
    project.snapctl(*options, "dump", check=True)
    user_sql(project.extra["db"], CHANGES)
    log = tmp_path / "argv.log"
    write_wrappers(tmp_path / "bin", log)
    project.snapctl(
        *options, "restore", "--yes", check=True, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}"
    )
    return log


def test_parallel_restore_of_large_tables_is_exact(
    mariadb_project: Project, tmp_path: Path
) -> None:
    db = mariadb_project.extra["db"]
    options = parallel_project(mariadb_project, tmp_path)
    user_sql(db, SCHEMA_OBJECTS)
    before, objects = mariadb_project.digest(), schema_objects(db)
    assert len(before["tables"]["shop_customer"]["rows"]) > 20000

    log = dump_change_and_restore(mariadb_project, options, tmp_path)

    assert mariadb_project.digest() == before
    assert schema_objects(db) == objects
    assert leftover_databases(db) == []
    # Tables, then the rows in several sessions (two big tables, the small ones), then the rest.
    assert loads_into_scratch(log) >= 4
    assert next_tag_id(mariadb_project) == before["sequences"]["shop_tag"]


def test_small_snapshot_loads_whole_in_one_session(
    mariadb_project: Project, tmp_path: Path
) -> None:
    """Below a few MB, splitting the script for a parallel load costs more than it saves."""
    options = parallel_settings(tmp_path)  # three jobs, but the example's few kB of rows
    user_sql(mariadb_project.extra["db"], SCHEMA_OBJECTS)
    before = mariadb_project.digest()
    log = dump_change_and_restore(mariadb_project, options, tmp_path)
    assert mariadb_project.digest() == before
    assert loads_into_scratch(log, ("mariadb", "mysql")) == 1


def test_failed_table_segment_leaves_database_unchanged(
    mariadb_project: Project, tmp_path: Path
) -> None:
    db = mariadb_project.extra["db"]
    options = parallel_project(mariadb_project, tmp_path)
    user_sql(db, SCHEMA_OBJECTS)
    name = json.loads(mariadb_project.snapctl(*options, "dump", "--json", "--compress", "none",
                                              check=True).stdout)["name"]  # fmt: skip
    # The rows of one large table fail at their end, while the other sessions load theirs.
    insert_before_last(
        mariadb_project, name,
        b"INSERT INTO `shop_product` (id) VALUES (1);\n",
        b"/*!40000 ALTER TABLE `shop_product` ENABLE KEYS */;",
    )  # fmt: skip
    user_sql(db, CHANGES)
    changed, objects = mariadb_project.digest(), schema_objects(db)

    result = mariadb_project.snapctl(*options, "restore", "--yes")

    assert result.returncode == EXIT_FAILED, result.stderr
    line = one_line(result.stderr)
    assert "`shop_product`" in line and "Duplicate entry" in line and "unchanged" in line, line
    assert mariadb_project.digest() == changed
    assert schema_objects(db) == objects
    assert leftover_databases(db) == []
    assert not list(mariadb_project.snapshots.glob(".tmp-*"))  # the segments are gone too


def synthetic_dump(pad: int) -> bytes:
    """A script laid out as mariadb-dump writes one: a table whose rows end ``pad`` bytes
    further on, a small one, a trigger whose body looks like a header, a 1.5 MB line."""
    rows = b",\n".join(b"(%d,'%s')" % (i, b"x" * (pad if i == 1 else 10)) for i in range(1, 4))
    return b"".join([
        b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n\n",
        b"--\n-- Table structure for table `big`\n--\n\nCREATE TABLE `big` (id INT);\n\n",
        b"--\n-- Dumping data for table `big`\n--\n\nLOCK TABLES `big` WRITE;\n",
        b"INSERT INTO `big` VALUES\n", rows, b";\nUNLOCK TABLES;\n",
        b"DELIMITER ;;\nCREATE TRIGGER t BEFORE INSERT ON big FOR EACH ROW BEGIN\n",
        b"-- Dumping data for table `fake`\nSET @a = 1; END ;;\nDELIMITER ;\n",
        b"--\n-- Table structure for table `small`\n--\n\nCREATE TABLE `small` (id INT);\n",
        b"--\n-- Dumping data for table `small`\n--\n\nLOCK TABLES `small` WRITE;\n",
        b"INSERT INTO `small` VALUES (1);\nUNLOCK TABLES;\n",
        b"--\n-- Dumping routines for database 'x'\n--\n",
        b"CREATE PROCEDURE p() SELECT '", b"y" * (3 << 19), b"';\n",
        b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n",
    ])  # fmt: skip


def test_split_dump_keeps_every_line_in_its_place(tmp_path: Path) -> None:
    """Every line lands in exactly one segment (the header aside, copied to each), rows
    whole and in order, wherever the 1 MiB read blocks fall and however long a line is."""
    from snapctl.connectors.mysql.dump_splitter import split_dump

    prelude = b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n\n--\n"  # up to a header
    block = 1 << 20  # what the splitter reads at once
    end_of_rows = synthetic_dump(0).index(b"\nUNLOCK TABLES;")
    # The end of the rows just before, across, and just after a block boundary; a long row.
    for pad in [*range(block - end_of_rows - 17, block - end_of_rows + 2), 3 * block]:
        dump = synthetic_dump(pad)
        src, work = tmp_path / f"dump-{pad}.sql", tmp_path / f"work-{pad}"
        src.write_bytes(dump)
        work.mkdir()
        segments = split_dump(src, work)
        assert segments is not None
        texts = [p.read_bytes() for p in (segments.schema, segments.post)]
        texts += [rows.path.read_bytes() for rows in segments.data]
        assert all(text.startswith(prelude) for text in texts)
        assert sorted(b"".join(t[len(prelude) :] for t in texts).splitlines()) == sorted(
            dump[len(prelude) :].splitlines()
        )
        schema, post = texts[0], texts[1]
        assert b"CREATE TABLE `big`" in schema and b"CREATE TABLE `small`" in schema
        assert b"TRIGGER" in post and b"PROCEDURE" in post and b"INSERT INTO" not in post
        big = next(rows for rows in segments.data if "`big`" in rows.label)
        body = big.path.read_bytes()
        assert (
            body.index(b"(1,")
            < body.index(b"(2,")
            < body.index(b"(3,")
            < body.index(b"UNLOCK TABLES;")
        )

    # Rows without LOCK TABLES have no end to find: the script is loaded whole instead.
    src = tmp_path / "unlocked.sql"
    src.write_bytes(synthetic_dump(10).replace(b"LOCK TABLES `big` WRITE;\n", b""))
    (tmp_path / "unlocked").mkdir()
    assert split_dump(src, tmp_path / "unlocked") is None


def test_restore_drops_only_what_killed_restores_left(mariadb_project: Project) -> None:
    """A restore first drops the scratch databases of killed ones (here a load killed: no
    marker), but not a pair kept after a failed undo, an aside holding tables it cannot
    account for, nor databases merely named alike."""
    db = mariadb_project.extra["db"]
    mariadb_project.dump()
    prefix = f"{db.name}_snapctl_"
    killed = [f"{prefix}0000000a", f"{prefix}0000000ao", f"{prefix}0000000fo"]
    kept = [f"{prefix}0000000b", f"{prefix}0000000bo"]
    held = f"{prefix}0000000eo"  # tables, and no scratch database saying whose
    alike = [f"{prefix}0000000g", f"{prefix}00000000oo", f"{prefix}0000000"]
    try:
        mariadb_admin(
            "".join(f"CREATE DATABASE `{name}`;" for name in [*killed, *kept, held, *alike])
            + f"CREATE TABLE `{prefix}0000000a`.shop_tag (x INT PRIMARY KEY);"
            + f"CREATE TABLE `{kept[1]}`.snapctl_kept_0000000b (x INT PRIMARY KEY);"
            + f"CREATE TABLE `{kept[1]}`.shop_tag (x INT PRIMARY KEY);"
            + f"CREATE TABLE `{held}`.shop_tag (x INT PRIMARY KEY);"
        )
        before = mariadb_project.digest()

        mariadb_project.snapctl("restore", "--yes", check=True)

        assert mariadb_project.digest() == before
        assert leftover_databases(db) == sorted([*kept, held, *alike])
    finally:
        for name in leftover_databases(db):
            mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`")


FILE_SETTINGS = """
from example_project.settings import *  # noqa: F403

DATABASES["default"]["OPTIONS"]["read_default_file"] = {path!r}  # noqa: F405
"""


def test_read_default_file_serves_the_tools_and_the_driver(
    mariadb_project: Project, tmp_path: Path
) -> None:
    """Settings that leave the password, host and port to OPTIONS read_default_file, whose
    wrong user the settings' USER overrides: snapctl's own queries (through the driver) and
    the tools read the same file, in the same order, and both reach the server."""
    db = mariadb_project.extra["db"]
    project_file = tmp_path / "my.cnf"
    project_file.write_text(
        f"[client]\nuser=nobody_{db.user}\npassword={db.password}\nhost=127.0.0.1\n"
        f"port={db.port or 3306}\n"
    )
    settings = tmp_path / "settings_dir"
    settings.mkdir()
    (settings / "file_settings.py").write_text(FILE_SETTINGS.format(path=str(project_file)))
    options = ["--settings", "file_settings", "--pythonpath", str(settings)]
    env = {"EXAMPLE_DB_PASSWORD": "", "EXAMPLE_DB_HOST": "", "EXAMPLE_DB_PORT": ""}
    before = mariadb_project.digest()

    mariadb_project.snapctl(*options, "dump", check=True, **env)
    user_sql(db, CHANGES.split("CREATE VIEW")[0])
    mariadb_project.snapctl(*options, "restore", "--yes", check=True, **env)

    assert mariadb_project.digest() == before
    assert leftover_databases(db) == []
    # Without the settings' USER the file's wrong one is used, by the first query already.
    result = mariadb_project.snapctl(*options, "restore", "--yes", EXAMPLE_DB_USER="", **env)
    assert result.returncode == EXIT_FAILED, result.stderr
    line = one_line(result.stderr)
    assert "connecting to 'default' failed" in line and f"nobody_{db.user}" in line, line
    assert db.password not in line


def test_driver_session_reconnects_after_a_pause_and_fails_in_one_line(
    mariadb_db: ServerDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server drops snapctl's connection while a tool runs (wait_timeout, a restart):
    the next query, after a pause, is made on a new connection. A failing statement is one
    line, the server's error with its code, and is not retried."""
    from snapctl.connectors.mysql import session as mysql_session
    from snapctl.errors import OperationFailed

    settings = {"NAME": mariadb_db.name, "USER": mariadb_db.user, "PORT": mariadb_db.port,
                "PASSWORD": mariadb_db.password, "HOST": mariadb_db.host}  # fmt: skip
    defaults = tmp_path / "client.cnf"
    defaults.write_text(option_file_text(settings))
    client = mysql_session.Client("default", defaults, settings)
    try:
        ((first,),) = client.query("SELECT CONNECTION_ID()", "asking")
        mariadb_admin(f"KILL {first}")
        monkeypatch.setattr(mysql_session, "IDLE_CHECK", 0.0)
        ((second,),) = client.query("SELECT CONNECTION_ID()", "asking")
        assert second != first

        with pytest.raises(OperationFailed) as failed:
            client.execute(["SELECT 1", "SELEC 2\n-- a second line", "SELECT 3"], "testing")
        message = str(failed.value)
        assert message.startswith("testing failed: ERROR 1064: ") and "\n" not in message
        assert mariadb_db.password not in message
        ((third,),) = client.query("SELECT CONNECTION_ID()", "asking")
        assert third == second  # an error of SQL leaves the connection as it was
    finally:
        client.close()


def test_the_driver_is_imported_only_to_connect() -> None:
    """Commands that never query a MySQL server do not pay for importing mysqlclient."""
    code = "import sys, snapctl.connectors.mysql; print('MySQLdb' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env()
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("command", [b"\\! touch {marker}", b"system touch {marker}"])
def test_a_crafted_script_never_runs_client_commands(
    mariadb_project: Project, tmp_path: Path, command: bytes
) -> None:
    """The client's shell escape in a snapshot's script (with a valid checksum), and no
    sandbox line (mariadb-dump 10.11.8 and later begin with one): the load runs in binary
    mode, where the client takes it for SQL; nothing runs, and the failed load leaves the
    database as it was."""
    marker = tmp_path / "ran"
    name = json.loads(mariadb_project.dump("--json", "--compress", "none"))["name"]
    script = uncompressed_artifact(mariadb_project.snapshots / name)
    lines = script.read_bytes().splitlines(keepends=True)
    script.write_bytes(b"".join(line for line in lines if b"sandbox mode" not in line))
    edit = command.replace(b"{marker}", str(marker).encode()) + b"\n"
    insert_before_last(mariadb_project, name, edit, b"/*!40103 SET TIME_ZONE")
    resign(mariadb_project.snapshots / name)
    mariadb_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")
    before = mariadb_project.digest()
    result = mariadb_project.snapctl("restore", "--yes", name)
    assert not marker.exists()
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "unchanged" in one_line(result.stderr)
    assert mariadb_project.digest() == before


# --- other sessions holding the live tables ----------------------------------------------

LOCK_TIMEOUT = 2  # seconds, for --lock-timeout
OVERDUE = 45  # seconds after which a restore is taken to hang (the server's own wait is a day)


def connect(db: ServerDatabase, *, default_database: bool = True, read_timeout: int = 60) -> Any:
    """A session of the application: mysqlclient, as the database's user."""
    import MySQLdb

    options: dict[str, Any] = {"db": db.name} if default_database else {}
    return MySQLdb.connect(
        host=db.host, port=int(db.port or 3306), user=db.user, password=db.password,
        autocommit=True, connect_timeout=10, read_timeout=read_timeout, **options,
    )  # fmt: skip


@contextlib.contextmanager
def open_transaction(
    db: ServerDatabase, table: str = "shop_tag", default_database: bool = True
) -> Iterator[Any]:
    """A forgotten ``manage.py shell``: BEGIN, one SELECT, then nothing, holding the table's
    metadata lock until it commits or goes."""
    session = connect(db, default_database=default_database)
    try:
        cursor = session.cursor()
        cursor.execute("BEGIN")
        cursor.execute(f"SELECT * FROM `{db.name}`.`{table}` LIMIT 1")
        cursor.fetchall()
        yield session
    finally:
        session.close()


class Background:
    """snapctl running while the test acts on the server, its stderr read as it comes."""

    def __init__(self, project: Project, *args: str) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "snapctl", *args], cwd=EXAMPLE, env=project.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def line_with(self, text: str, timeout: float) -> str | None:
        """The first stderr line holding ``text``, waiting up to ``timeout`` s for it."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                line = self.lines.get(timeout=left)
                if text in line:
                    return line
        return None

    def finish(self, timeout: float = OVERDUE) -> tuple[int | None, float, list[str]]:
        """Exit status (None if it ran on, and was killed: alone, which leaves its swapping
        client to finish once the blocker goes), seconds it ran and its stderr lines."""
        returncode: int | None = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            returncode = self.process.wait(timeout=timeout)
        elapsed = time.monotonic() - self.started
        if returncode is None:
            self.process.kill()
            self.process.wait()
        time.sleep(0.1)  # the reader thread's last lines
        return returncode, elapsed, [line.strip() for line in self.stderr if line.strip()]


class Reader(threading.Thread):
    """The application reading a table over and over, each query timed, on its own session."""

    def __init__(self, db: ServerDatabase, table: str = "shop_tag") -> None:
        super().__init__(daemon=True)
        self.db, self.table = db, table
        self.times: list[float] = []
        self.since: float | None = None  # when the query now running began
        self.stop = threading.Event()

    @property
    def longest(self) -> float:
        """The longest any query took, the one still running included."""
        since = self.since
        return max([*self.times, time.monotonic() - since if since is not None else 0.0])

    def run(self) -> None:
        session = None
        while not self.stop.is_set():
            start = self.since = time.monotonic()
            try:
                session = session or connect(self.db, read_timeout=OVERDUE)
                cursor = session.cursor()
                cursor.execute(f"SELECT count(*) FROM `{self.table}`")
                cursor.fetchall()
            except Exception:  # a timed-out read: the query queued the whole time
                session = None
            self.times.append(time.monotonic() - start)
            self.since = None
            time.sleep(0.1)
        if session is not None:
            session.close()

    def __enter__(self) -> Reader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=LOCK_TIMEOUT + 5)  # longer: it queued, as `longest` says


def change_after_snapshot(project: Project) -> dict[str, Any]:
    """Dump, then change the database (rows, a counter); its digest after the change."""
    project.dump()
    user_sql(project.extra["db"], CHANGES.split("CREATE TABLE")[0])
    return project.digest()


def test_restore_names_a_forgotten_transaction_and_gives_up_unchanged(
    mariadb_project: Project,
) -> None:
    """A forgotten transaction in another session: restore says it waits, for how long and
    for whom, then gives up at the lock timeout naming it, the database as it was."""
    db = mariadb_project.extra["db"]
    changed = change_after_snapshot(mariadb_project)

    with open_transaction(db) as blocker:
        session = blocker.thread_id()
        restore = Background(
            mariadb_project, "restore", "--yes", "--lock-timeout", str(LOCK_TIMEOUT)
        )
        returncode, elapsed, lines = restore.finish()

    assert returncode == EXIT_FAILED, lines
    assert elapsed < 30, elapsed
    assert len(lines) == 2, lines
    notice, error = lines
    assert f"waiting up to {LOCK_TIMEOUT} s" in notice and f"session {session} (" in notice, notice
    assert "idle in transaction for" in notice and db.user in notice, notice
    assert error.startswith("snapctl: error: "), error
    assert f"session {session} ({db.user}@" in error and f"KILL {session}" in error, error
    assert "--lock-timeout" in error and "is unchanged" in error, error
    assert mariadb_project.digest() == changed
    assert leftover_databases(db) == []


@pytest.mark.parametrize("seen", [True, False], ids=["in-the-database", "from-elsewhere"])
def test_application_never_queues_behind_restore_longer_than_the_lock_timeout(
    mariadb_project: Project, seen: bool
) -> None:
    """While a forgotten transaction holds a table, the application's queries on it run at
    once: restore waits for it without locking anything. A transaction that the look before
    the swap cannot see (its session's default database is another) makes the RENAME wait
    instead, and queries queue behind it, but for the lock timeout at most; the restore then
    fails the same way, and puts back the objects it had dropped."""
    db = mariadb_project.extra["db"]
    user_sql(db, SCHEMA_OBJECTS)  # a trigger on shop_tag, dropped before the RENAME
    changed, objects = change_after_snapshot(mariadb_project), schema_objects(db)
    table = "shop_tag" if seen else "shop_customer"  # without a trigger: only RENAME waits

    with open_transaction(db, table, default_database=seen) as blocker, Reader(db, table) as app:
        session = blocker.thread_id()
        restore = Background(
            mariadb_project, "restore", "--yes", "--lock-timeout", str(LOCK_TIMEOUT)
        )
        returncode, _, lines = restore.finish()
        time.sleep(0.5)

    assert app.longest < LOCK_TIMEOUT + 3 and len(app.times) > 10, app.times
    assert returncode == EXIT_FAILED, lines
    error = lines[-1]
    assert f"session {session} (" in error and "--lock-timeout" in error, error
    assert mariadb_project.digest() == changed
    assert schema_objects(db) == objects
    assert leftover_databases(db) == []


def test_restore_goes_on_when_the_transaction_ends_in_time(mariadb_project: Project) -> None:
    db = mariadb_project.extra["db"]
    before = mariadb_project.digest()
    changed = change_after_snapshot(mariadb_project)
    assert changed != before

    with open_transaction(db) as blocker:
        session = blocker.thread_id()
        restore = Background(mariadb_project, "restore", "--yes", "--lock-timeout", "30")
        waiting = restore.line_with("waiting up to 30 s", timeout=OVERDUE)
        blocker.commit()
        returncode, elapsed, lines = restore.finish()

    assert waiting is not None and f"session {session} (" in waiting, lines
    assert returncode == EXIT_OK, lines
    assert elapsed < 30, elapsed
    assert mariadb_project.digest() == before
    assert leftover_databases(db) == []


def test_without_process_privilege_the_lock_timeout_still_bounds_the_wait(
    mariadb_project: Project,
) -> None:
    """An account without PROCESS cannot see other sessions' transactions, so restore cannot
    wait for them by name; its RENAME still waits at most the lock timeout, then fails with
    the same advice, the database unchanged."""
    db = mariadb_project.extra["db"]
    changed = change_after_snapshot(mariadb_project)
    for host in ("%", "localhost"):
        mariadb_admin(f"REVOKE PROCESS ON *.* FROM '{db.user}'@'{host}'")

    with open_transaction(db), Reader(db) as app:
        restore = Background(
            mariadb_project, "restore", "--yes", "--lock-timeout", str(LOCK_TIMEOUT)
        )
        returncode, _, lines = restore.finish()
        time.sleep(0.5)

    assert app.longest < LOCK_TIMEOUT + 3 and len(app.times) > 10, app.times
    assert returncode == EXIT_FAILED, lines
    error = one_line("\n".join(lines))
    assert "ERROR 1205" in error and "--lock-timeout" in error and "is unchanged" in error
    assert mariadb_project.digest() == changed
    assert leftover_databases(db) == []


def test_a_missing_database_on_dump_is_one_line(mariadb_project: Project) -> None:
    result = mariadb_project.snapctl("dump", EXAMPLE_DB_NAME="snapctl_no_such_db")
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_line(result.stderr)
    assert "'snapctl_no_such_db'" in line and "does not exist" in line
    assert "CREATE DATABASE" in line and "Traceback" not in result.stderr
    assert mariadb_project.store_entries() == []


def test_a_routine_of_another_account_names_the_grant(mariadb_project: Project) -> None:
    """The dump tool refuses a routine it may not read: the line says which grant fixes it,
    and with that grant the dump goes through."""
    db = mariadb_project.extra["db"]
    mariadb_admin(f"CREATE DEFINER='root'@'localhost' PROCEDURE {db.name}.by_root() SELECT 1")
    refused = mariadb_project.snapctl("dump")
    assert refused.returncode == EXIT_USAGE, refused.stderr
    line = one_line(refused.stderr)
    assert "procedure `by_root`" in line
    assert f"GRANT SELECT ON mysql.proc TO '{db.user}'@'" in line
    grantee = line.split(" TO ", 1)[1].split(" ", 1)[0]
    mariadb_admin(f"GRANT SELECT ON mysql.proc TO {grantee}")
    mariadb_project.snapctl("dump", check=True)
