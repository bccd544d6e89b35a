"""MySQL and MariaDB, with mysqldump/mariadb-dump and mysql/mariadb.

Connection: DATABASES NAME, USER, PASSWORD, HOST (a path starting with ``/`` is a unix socket),
PORT and OPTIONS ``unix_socket``, ``charset``, ``ssl`` (ca/cert/key/capath/cipher), ``ssl_mode``
and ``read_default_file``. They go into a 0600 option file passed as the tools' first argument,
``--defaults-extra-file``; the password is never on a command line, in the environment or in
an error message. ``read_default_file`` is pulled in with an ``!include`` line at the top of
that file rather than ``--defaults-file`` (MariaDB's tools ignore the extra file when both are
given): the tools read their global option files, then the project's file, then the settings,
later values winning, as Django's explicit settings win over ``read_default_file``.

Dump: one ``--single-transaction`` read (a consistent snapshot of InnoDB tables that does not
block writers; MyISAM tables are not consistent), with routines, triggers, events,
``--hex-blob`` and utf8mb4, without tablespaces or ``CREATE DATABASE``/``USE``, so the script
can be loaded into any schema.

Restore replaces the database with the snapshot and nothing else, as atomically as the server
allows (neither engine has transactional DDL):
1. The script is loaded into a scratch database ``<NAME>_snapctl_<random>`` created with the
   live database's character set. A script that fails (bad SQL, data, privileges, space, a
   lost connection) fails there: the live database is untouched and the scratch one dropped.
2. One session drops the live database's triggers, views, routines and events, then moves
   every table in a single ``RENAME TABLE`` (snapshot tables in, live tables out to the scratch
   database). A multi-table RENAME is atomic on both engines (MySQL 8 atomic DDL; MariaDB holds
   every table's metadata lock and, from 10.6, logs the rename crash-safely): other sessions
   see all the old tables or all the new ones, never a mix. Foreign keys and AUTO_INCREMENT
   counters travel with the tables.
3. A second session recreates the snapshot's views, triggers, routines and events in the live
   database (regenerated from the scratch database, so they name no schema).
4. The scratch database, now holding the previous tables, is dropped.
So the guarantee is: tables and rows switch in one atomic step; for the milliseconds between
steps 2 and 3 the new tables are visible without their triggers and views. If step 2 or 3
fails, the previous tables and objects are put back (the RENAME is reversed) and the error
names what failed; only if that too fails is the scratch database kept, holding the previous
tables, and the message names it. The same holds on MySQL and MariaDB; the differences are the
crash-safety of the RENAME itself (MySQL 8.0+, MariaDB 10.6+) and that events in the snapshot
may fire in the scratch database while it exists if the event scheduler is on.

Privileges: ALL on the database and on ``<NAME>_snapctl_%`` (e.g.
``GRANT ALL ON `app\\_snapctl\\_%`.* TO ...``); objects whose DEFINER is another account need
SET USER (MariaDB) / SET_USER_ID or SYSTEM_USER (MySQL) to be recreated, and reading other
accounts' routines needs SELECT on mysql.proc (MariaDB) or SHOW_ROUTINE (MySQL).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapctl.connectors import _process
from snapctl.errors import ConfigurationError, OperationFailed

_PACKAGE_HINT = "the MariaDB or MySQL client (e.g. apt install mariadb-client)"
_SCRATCH_INFIX = "_snapctl_"
_MAX_NAME = 64
_DUMP_FLAGS = (
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--no-tablespaces",
    "--skip-dump-date",
    "--max-allowed-packet=1G",
)
_OBJECT_FLAGS = ("--no-data", "--skip-lock-tables", "--skip-dump-date", "--add-drop-trigger")
# Connection charsets that are subsets of utf8mb4: reading through them could lose characters.
_UTF8_SUBSETS = {"utf8", "utf8mb3"}
_SERVER_VERSION = re.compile(r"^-- Server version\s+(\S+)", re.MULTILINE)


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_text(text: str) -> str:
    """A string literal that survives any sql_mode (NO_BACKSLASH_ESCAPES included)."""
    return f"CONVERT(X'{text.encode().hex()}' USING utf8mb4)"


def _option_value(value: object) -> str:
    """A value for an option file: quoted so ``#``, quotes and spaces stay part of it."""
    text = str(value)
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = text.replace(raw, escaped)
    return f'"{text}"'


def _include_line(path: object) -> str:
    text = str(Path(str(path)).expanduser())
    if "\n" in text or "\r" in text:
        raise ConfigurationError("OPTIONS['read_default_file'] must be a plain file path")
    if not Path(text).is_file():
        raise ConfigurationError(f"OPTIONS['read_default_file'] {text} does not exist")
    return f"!include {text}"


def _client_options(settings: dict[str, Any]) -> dict[str, object]:
    """The [client] options for DATABASES settings, empty ones left out so files win."""
    options = settings.get("OPTIONS") or {}
    host = str(settings.get("HOST") or "")
    charset = str(options.get("charset") or "utf8mb4")
    values: dict[str, object] = {
        "user": settings.get("USER"),
        "password": settings.get("PASSWORD"),
        "socket": host if host.startswith("/") else options.get("unix_socket"),
        "host": None if host.startswith("/") else host,
        "port": settings.get("PORT"),
        "default-character-set": "utf8mb4" if charset in _UTF8_SUBSETS else charset,
    }
    ssl = options.get("ssl") or {}
    if not isinstance(ssl, dict):
        raise ConfigurationError("OPTIONS['ssl'] must be a dict with ca, cert, key")
    for key in ("ca", "cert", "key", "capath", "cipher"):
        values[f"ssl-{key}"] = ssl.get(key)
    if options.get("ssl_mode"):
        values["loose-ssl-mode"] = options["ssl_mode"]  # MySQL only; MariaDB skips loose-*
    return {key: value for key, value in values.items() if value not in (None, "")}


def option_file_text(settings: dict[str, Any]) -> str:
    """The whole option file: the project's own file first, then the settings over it."""
    lines = []
    read_default_file = (settings.get("OPTIONS") or {}).get("read_default_file")
    if read_default_file:
        lines.append(_include_line(read_default_file))
    lines.append("[client]")
    for key, value in _client_options(settings).items():
        lines.append(f"{key}={_option_value(value)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Tool:
    """One client program and what its ``--version`` says."""

    path: str
    version: str

    @property
    def mariadb(self) -> bool:
        return "mariadb" in self.version.lower()

    @property
    def major(self) -> int:
        match = re.search(r"Distrib (\d+)", self.version) or re.search(r"Ver (\d+)", self.version)
        return int(match.group(1)) if match else 0


def _tool(*candidates: str) -> Tool:
    path = _process.find_binary(*candidates, package_hint=_PACKAGE_HINT)
    text = _process.run([path, "--version"], what=f"{Path(path).name} --version").strip()
    # "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for ..." -> the part after the name.
    return Tool(path, text.split(None, 1)[1] if " " in text else text)


@dataclass
class Objects:
    """What one schema holds, by kind."""

    tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    routines: list[tuple[str, str]] = field(default_factory=list)  # (PROCEDURE, name)...
    events: list[str] = field(default_factory=list)

    @property
    def programs(self) -> bool:
        """Anything beyond tables and views, which a second dump must carry."""
        return bool(self.triggers or self.routines or self.events)


class Client:
    """The tools, pointed at one alias through a private option file."""

    def __init__(self, alias: str, defaults: Path, settings: dict[str, Any]) -> None:
        self.alias = alias
        self.defaults = defaults
        self.database = str(settings.get("NAME") or "")
        self.password = str(settings.get("PASSWORD") or "")
        self.dumper = _tool("mariadb-dump", "mysqldump")
        self.client = _tool("mariadb", "mysql")

    @classmethod
    @contextlib.contextmanager
    def open(cls, alias: str) -> Iterator[Client]:
        from snapctl.django_env import database_settings

        settings = database_settings(alias)
        if not settings.get("NAME"):
            raise ConfigurationError(f"database '{alias}' has no NAME")
        with _process.private_file(option_file_text(settings), suffix=".cnf") as defaults:
            yield cls(alias, defaults, settings)

    def run(
        self,
        tool: Tool,
        args: Sequence[str],
        what: str,
        stdin: Path | None = None,
        stdout: Path | None = None,
    ) -> str:
        # The option file must come first: the tools only honour it there.
        argv = [tool.path, f"--defaults-extra-file={self.defaults}", *args]
        return _process.run(argv, what=what, stdin=stdin, stdout=stdout, secrets=[self.password])

    def execute(self, sql: str, what: str, database: str | None = None) -> list[list[str]]:
        """Run SQL statements in one session; return the rows, tab-separated and raw.

        The SQL goes through stdin: a long RENAME could exceed the limit on one argument.
        """
        args = ["--batch", "--raw", "--skip-column-names", "--binary-mode"]
        if database is not None:
            args.append(f"--database={database}")
        with _process.private_file(sql, suffix=".sql") as script:
            out = self.run(self.client, args, what, stdin=script)
        return [line.split("\t") for line in out.splitlines() if line]

    def load(self, script: Path, database: str, what: str) -> None:
        args = ["--batch", "--binary-mode", "--max-allowed-packet=1G", f"--database={database}"]
        self.run(self.client, args, what, stdin=script)

    def dump_flags(self) -> list[str]:
        flags = list(_DUMP_FLAGS)
        if not self.dumper.mariadb:
            # Oracle's mysqldump: no GTID_PURGED line that only a fresh server accepts, and no
            # histogram query that MariaDB servers and older MySQLs reject.
            flags.append("--set-gtid-purged=OFF")
            if self.dumper.major >= 8:
                flags.append("--column-statistics=0")
        return flags


# --- restore steps ----------------------------------------------------------------------


def _in_list(names: Sequence[str]) -> str:
    return "(" + ", ".join(quote_text(name) for name in names) + ")"


def _list_objects(client: Client, schemas: Sequence[str]) -> dict[str, Objects]:
    """Every table, view, trigger, routine and event of ``schemas``, in one query.

    Names travel as hex so that tabs or newlines in them cannot break the parsing.
    """
    where = _in_list(schemas)
    sql = (
        "SELECT 'T', HEX(TABLE_SCHEMA), HEX(TABLE_NAME), TABLE_TYPE FROM "
        f"information_schema.TABLES WHERE TABLE_SCHEMA IN {where} "
        "UNION ALL SELECT 'G', HEX(TRIGGER_SCHEMA), HEX(TRIGGER_NAME), '' FROM "
        f"information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN {where} "
        "UNION ALL SELECT 'R', HEX(ROUTINE_SCHEMA), HEX(ROUTINE_NAME), ROUTINE_TYPE FROM "
        f"information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN {where} "
        "UNION ALL SELECT 'E', HEX(EVENT_SCHEMA), HEX(EVENT_NAME), '' FROM "
        f"information_schema.EVENTS WHERE EVENT_SCHEMA IN {where};"
    )
    found = {schema: Objects() for schema in schemas}
    for row in client.execute(sql, f"listing the objects of '{client.database}'"):
        kind, schema, name, detail = row[0], _unhex(row[1]), _unhex(row[2]), row[3]
        objects = found[schema]
        if kind == "T":
            (objects.views if detail == "VIEW" else objects.tables).append(name)
        elif kind == "G":
            objects.triggers.append(name)
        elif kind == "R":
            objects.routines.append((detail, name))
        else:
            objects.events.append(name)
    return found


def _unhex(text: str) -> str:
    return bytes.fromhex(text).decode("utf-8")


def _drop_programs(schema: str, objects: Objects) -> list[str]:
    """Statements dropping a schema's triggers, views, routines and events."""
    where = quote_name(schema)
    statements = [f"DROP TRIGGER IF EXISTS {where}.{quote_name(t)};" for t in objects.triggers]
    statements += [f"DROP VIEW IF EXISTS {where}.{quote_name(v)};" for v in objects.views]
    statements += [
        f"DROP {kind} IF EXISTS {where}.{quote_name(name)};" for kind, name in objects.routines
    ]
    statements += [f"DROP EVENT IF EXISTS {where}.{quote_name(e)};" for e in objects.events]
    return statements


def _move_tables(
    live: str, outgoing: Sequence[str], aside: str, incoming: Sequence[str], source: str
) -> list[str]:
    """RENAME clauses moving the live tables to ``aside``, then ``source``'s tables in.

    Two scratch databases rather than one: InnoDB foreign key names are unique per schema, so
    a live table may only enter a schema that holds no table with the same constraints.
    """
    live_q, aside_q, source_q = quote_name(live), quote_name(aside), quote_name(source)
    clauses = [f"{live_q}.{quote_name(t)} TO {aside_q}.{quote_name(t)}" for t in outgoing]
    clauses += [f"{source_q}.{quote_name(t)} TO {live_q}.{quote_name(t)}" for t in incoming]
    return clauses


def _programs_script(client: Client, schema: str, objects: Objects, dest: Path) -> Path | None:
    """A script recreating a schema's views, triggers, routines and events, naming no schema,
    written by the dump tool itself (it knows each object's sql_mode and character sets)."""
    parts = []
    if objects.views:
        views = dest.with_suffix(".views.sql")
        args = [*_OBJECT_FLAGS, "--skip-triggers", f"--result-file={views}", schema]
        client.run(client.dumper, [*args, *objects.views], f"reading the views of '{schema}'")
        parts.append(views)
    if objects.programs:
        programs = dest.with_suffix(".programs.sql")
        args = [*_OBJECT_FLAGS, "--no-create-info", "--triggers", "--routines", "--events"]
        client.run(
            client.dumper,
            [*args, f"--result-file={programs}", schema],
            f"reading the triggers, routines and events of '{schema}'",
        )
        parts.append(programs)
    if not parts:
        return None
    with open(dest, "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
            out.write(b"\n")
    return dest


@dataclass
class Swap:
    """One restore's names and saved state, so that a failure can be undone.

    ``scratch`` receives the snapshot; ``aside`` receives the previous tables.
    """

    client: Client
    live: str
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    keep: bool = False  # set when ``aside`` holds the previous tables after a failed undo

    @property
    def scratch(self) -> str:
        return f"{self.live}{_SCRATCH_INFIX}{self.token}"

    @property
    def aside(self) -> str:
        return f"{self.live}{_SCRATCH_INFIX}{self.token}o"

    @property
    def pending(self) -> str:
        return f"snapctl_pending_{self.token}"

    @property
    def done(self) -> str:
        return f"snapctl_swapped_{self.token}"

    def check_names(self) -> None:
        if len(self.aside) > _MAX_NAME:
            longest = _MAX_NAME - len(self.aside) + len(self.live)
            raise ConfigurationError(
                f"database name '{self.live}' is too long for snapctl's scratch databases "
                f"beside it (at most {longest} characters)"
            )

    def create(self) -> None:
        """The scratch databases get the live one's defaults, which routines are created
        with. A missing live database is created, so a snapshot restores onto a new server."""
        rows = self.client.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
            f"information_schema.SCHEMATA WHERE SCHEMA_NAME = {quote_text(self.live)};",
            f"reading database '{self.live}'",
        )
        options = f" CHARACTER SET {rows[0][0]} COLLATE {rows[0][1]}" if rows else ""
        statements = [] if rows else [f"CREATE DATABASE {quote_name(self.live)};"]
        statements += [f"CREATE DATABASE {quote_name(db)}{options};" for db in self.scratches]
        self.client.execute(
            "\n".join(statements),
            f"creating scratch databases (it needs ALL on `{self.live}_snapctl_%`)",
        )

    @property
    def scratches(self) -> tuple[str, str]:
        return self.scratch, self.aside

    def drop(self) -> None:
        self.client.execute(
            "".join(f"DROP DATABASE IF EXISTS {quote_name(db)};" for db in self.scratches),
            f"dropping scratch databases {' and '.join(self.scratches)} (drop them by hand)",
        )

    def run(self, src: Path) -> None:
        client = self.client
        try:
            client.load(src, self.scratch, f"loading the snapshot into '{self.scratch}'")
        except OperationFailed as exc:
            raise OperationFailed(f"{exc}; database '{self.live}' is unchanged") from exc
        found = _list_objects(client, [self.live, self.scratch])
        old, new = found[self.live], found[self.scratch]
        new_programs = _programs_script(client, self.scratch, new, self.workdir / "new.sql")
        old_programs = _programs_script(client, self.live, old, self.workdir / "old.sql")
        try:
            self._exchange(old, new)
            if new_programs is not None:
                client.load(
                    new_programs,
                    self.live,
                    f"recreating views, triggers, routines and events in '{self.live}'",
                )
        except OperationFailed as exc:
            self._put_back(old_programs, exc)

    def _exchange(self, old: Objects, new: Objects) -> None:
        """Drop what cannot move, then exchange all tables in one atomic RENAME.

        Triggers block a RENAME across schemas, and views cannot change schema at all; the
        scratch copies go too, as a view there could block a table. A sentinel table renamed
        in the same statement records whether it happened.
        """
        statements = _drop_programs(self.live, old) + _drop_programs(self.scratch, new)
        scratch = quote_name(self.scratch)
        statements.append(f"CREATE TABLE {scratch}.{quote_name(self.pending)} (x INT);")
        clauses = _move_tables(self.live, old.tables, self.aside, new.tables, self.scratch)
        clauses.append(f"{scratch}.{quote_name(self.pending)} TO {scratch}.{quote_name(self.done)}")
        statements.append("RENAME TABLE " + ", ".join(clauses) + ";")
        self.client.execute(
            "\n".join(statements), f"swapping the snapshot's tables into '{self.live}'"
        )

    def _put_back(self, old_programs: Path | None, failure: OperationFailed) -> None:
        """Undo a failed exchange: move the previous tables back, recreate their objects."""
        client = self.client
        try:
            found = _list_objects(client, [self.live, self.scratch, self.aside])
            now = found[self.live]
            statements = _drop_programs(self.live, now)
            if self.done in found[self.scratch].tables:
                previous = found[self.aside].tables
                clauses = _move_tables(self.live, now.tables, self.scratch, previous, self.aside)
                statements.append("RENAME TABLE " + ", ".join(clauses) + ";")
            if statements:
                client.execute("\n".join(statements), f"putting back '{self.live}'")
            if old_programs is not None:
                client.load(old_programs, self.live, f"putting back the objects of '{self.live}'")
        except OperationFailed as undo:
            self.keep = True
            raise OperationFailed(
                f"{failure}; putting the previous database back also failed ({undo}); its "
                f"tables are in database '{self.aside}'"
            ) from failure
        raise OperationFailed(f"{failure}; database '{self.live}' was put back as it was") from (
            failure
        )


class MySQLConnector:
    """Back up and restore MySQL/MariaDB databases using mysqldump and mysql."""

    name = "mysql"
    engines = ("mysql",)
    binaries = ("mariadb-dump|mysqldump", "mariadb|mysql")
    extension = "sql"

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump the MySQL/MariaDB database to dest as one consistent SQL script."""
        with Client.open(db_alias) as client:
            args = [*client.dump_flags(), f"--result-file={dest}", "--", client.database]
            client.run(client.dumper, args, f"{Path(client.dumper.path).name} of '{db_alias}'")
        with open(dest, encoding="utf-8", errors="replace") as handle:
            header = handle.read(4096)
        match = _SERVER_VERSION.search(header)
        server_version = match.group(1) if match else None
        return {
            "format": "sql",
            "database": client.database,
            "server_version": server_version,
            "server": "mariadb"
            if server_version and "mariadb" in server_version.lower()
            else "mysql",
            "dump_tool": Path(client.dumper.path).name,
            "dump_tool_version": client.dumper.version,
        }

    def restore(self, db_alias: str, src: Path) -> None:
        """Restore the MySQL/MariaDB database from src: load aside, then swap in."""
        with (
            Client.open(db_alias) as client,
            tempfile.TemporaryDirectory(prefix="snapctl-mysql-") as workdir,
        ):
            swap = Swap(client, client.database, Path(workdir))
            swap.check_names()
            swap.create()
            try:
                swap.run(src)
            except BaseException:
                if not swap.keep:
                    with contextlib.suppress(OperationFailed):  # the first error matters
                        swap.drop()
                raise
            swap.drop()
