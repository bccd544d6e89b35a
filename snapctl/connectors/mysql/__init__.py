"""MySQL and MariaDB, with mysqldump/mariadb-dump and mysql/mariadb.

A dump is one ``--single-transaction`` script, loadable into any schema. A restore loads the
snapshot into a scratch database (split for a parallel load when large), then swaps its
tables in by one atomic RENAME, recreating views, triggers, routines and events; killed
restores are finished by the next one. A snapshot can also be prepared in a copy ahead of
time, and swapped in later in moments. The design, the guarantees and the privileges:
docs/mysql.md. The modules: ``option_file`` and ``session`` (the connection), ``quoting``,
``names`` (of the side databases), ``objects`` (what a schema holds), ``dump_splitter`` and
``loading``, ``blocking_sessions`` (other sessions holding the tables), ``swap``,
``recovery``, ``disk_room`` and ``prepared``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from snapctl import other_sessions
from snapctl.connectors.api import PreparedCopy, Sanitizer
from snapctl.connectors.mysql import prepared
from snapctl.connectors.mysql.quoting import as_text, sql_text
from snapctl.connectors.mysql.recovery import recover
from snapctl.connectors.mysql.scratch import scratch_copy
from snapctl.connectors.mysql.session import Client, Tool, lock_wait_seconds
from snapctl.connectors.mysql.swap import Swap
from snapctl.errors import ConfigurationError, OperationFailed

__all__ = ["MySQLConnector"]

_MAX_JOBS = 4
_WORK_PREFIX = "snapctl-"  # a restore's work directory, beside its snapshot file

_DUMP_FLAGS = (
    "--single-transaction",
    "--comments",  # the section headers a restore splits the script at, whatever my.cnf says
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--no-tablespaces",
    "--skip-dump-date",
    "--max-allowed-packet=1G",
)


def _dump_flags(dumper: Tool) -> list[str]:
    flags = list(_DUMP_FLAGS)
    if not dumper.mariadb:
        # Oracle's mysqldump: no GTID_PURGED line that only a fresh server accepts, and no
        # histogram query that MariaDB servers and older MySQLs reject.
        flags.append("--set-gtid-purged=OFF")
        if dumper.major >= 8:
            flags.append("--column-statistics=0")
    return flags


def _work_root(src: Path) -> Path | None:
    """Where a restore's scratch files go: beside ``src``, in the private scratch directory
    the caller gives the artifact (snapctl's restore puts it on the store's disk, sized for
    dumps, or in the temporary directory for a shared store, and removes it, even after a
    kill), never inside a snapshot. Else the system's temporary directory."""
    root = src.absolute().parent  # not resolved: src may be a link to an open file
    return root if os.access(root, os.W_OK | os.X_OK) else None


def _unreadable_routine(
    failure: OperationFailed, db_alias: str, account: str | None
) -> ConfigurationError | None:
    """The dump tool's refusal of a routine another account defined, as the grant that
    fixes it; None for any other failure."""
    found = re.search(r"insufficient privileges to SHOW CREATE (\w+) `([^`]*)`", str(failure))
    if found is None:
        return None
    kind, routine = found.group(1).lower(), found.group(2)
    user, _, host = (account or "").rpartition("@")
    grantee = f"'{user}'@'{host}'" if user else "the user"
    return ConfigurationError(
        f"the dump of '{db_alias}' may not read {kind} `{routine}`, defined by another "
        f"account; as an admin: GRANT SELECT ON mysql.proc TO {grantee} (MariaDB before "
        "11.3; from 11.3 GRANT SHOW CREATE ROUTINE ON *.*, on MySQL 8.0.20 and later GRANT "
        "SHOW_ROUTINE ON *.*)"
    )


def _ignores_table_data(client: Client) -> bool:
    """Whether the dump tool can dump a table without its rows in the same run
    (``--ignore-table-data``: MariaDB's, from 10.1.46/10.5.5; Oracle's mysqldump cannot)."""
    dumper = client.dumper.path
    return "--ignore-table-data" in client.run(dumper, ["--help"], f"{Path(dumper).name} --help")


class MySQLConnector:
    """Back up and restore MySQL/MariaDB databases using mysqldump and mysql."""

    name = "mysql"
    needs_app_registry = False  # reads settings.DATABASES only
    engines = ("mysql",)
    binaries = ("mariadb-dump|mysqldump", "mariadb|mysql")
    extension = "sql"
    dump_to_pipe = True  # the dump tool writes its script front to back
    exclude_data: tuple[str, ...] = ()  # dumped without their rows

    def __init__(self, jobs: int | None = None, keep_free: float = 0.05) -> None:
        """``jobs``: sessions loading rows at once in a restore (default: cores, at most 4;
        1 loads the script whole, in one session). ``keep_free``: the share of the database
        server's disk that a prepared copy must leave free (checked where the server runs on
        this machine)."""
        self.jobs = jobs if jobs is not None else min(os.cpu_count() or 1, _MAX_JOBS)
        if self.jobs < 1:
            raise ConfigurationError("MySQLConnector(jobs=...) must be at least 1")
        share = isinstance(keep_free, int | float) and not isinstance(keep_free, bool)
        if not (share and 0 <= keep_free < 1):
            raise ConfigurationError(
                f"MySQLConnector(keep_free={keep_free!r}) must be a share of the disk, "
                "0 or more and below 1"
            )
        self.keep_free = float(keep_free)

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump the MySQL/MariaDB database to dest as one consistent SQL script."""
        with Client.open(db_alias) as client:
            rows = client.query(
                "SELECT VERSION(), CURRENT_USER(), "
                f"(SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "
                f"{sql_text(client.database)})",
                f"connecting to '{db_alias}'",
            )
            version, account, exists = as_text(rows[0][0]), as_text(rows[0][1]), rows[0][2]
            if not exists:
                raise ConfigurationError(
                    f"database '{client.database}' of '{db_alias}' does not exist (or "
                    f"{account} may not see it); create it (as an admin: CREATE DATABASE "
                    f"`{client.database}`) or set DATABASES['{db_alias}']['NAME'] to the "
                    "database to snapshot"
                )
            try:
                self._run_dump(client, dest)
            except OperationFailed as exc:
                grant = _unreadable_routine(exc, db_alias, account)
                if grant is None:
                    raise
                raise grant from exc
        return {
            "format": "sql",
            "database": client.database,
            "server_version": version,
            "server": "mariadb" if "mariadb" in (version or "").lower() else "mysql",
            "dump_tool": Path(client.dumper.path).name,
            "dump_tool_version": client.dumper.version,
        }

    def _run_dump(self, client: Client, dest: Path) -> None:
        """The dump tool's script of the database into ``dest``, without the rows of
        ``exclude_data``: in the same single transaction where the tool can leave out a
        table's rows (``--ignore-table-data``, MariaDB's); else those tables' definitions
        and triggers first (``--no-data``), then the rest (``--ignore-table``), one tool
        after the other into ``dest`` opened once. The rows all come from the second
        tool's one transaction; only the empty tables' definitions are read just before."""
        dumper = client.dumper
        what = f"{Path(dumper.path).name} of '{client.alias}'"
        flags, database = _dump_flags(dumper), client.database
        if not self.exclude_data:
            client.run(dumper.path, [*flags, f"--result-file={dest}", "--", database], what)
            return
        # The tools take "database.table" whole, compared with the names as they are.
        named = [f"{database}.{table}" for table in self.exclude_data]
        if _ignores_table_data(client):
            left_out = [f"--ignore-table-data={name}" for name in named]
            client.run(
                dumper.path, [*flags, *left_out, f"--result-file={dest}", "--", database], what
            )
            return
        empty = ["--no-data", "--skip-routines", "--skip-events", "--triggers"]
        ignored = [f"--ignore-table={name}" for name in named]
        with open(dest, "wb") as out:
            client.run(
                dumper.path, [*flags, *empty, "--", database, *self.exclude_data], what, stdout=out
            )
            client.run(dumper.path, [*flags, *ignored, "--", database], what, stdout=out)

    def dump_sanitized(self, db_alias: str, dest: Path, sanitizer: Sanitizer) -> dict[str, Any]:
        """Dump a sanitized scratch copy (scratch.py): made beside the live database and
        filled from it, rewritten by the rules, dumped as the live database would be (a dump
        reads no old row versions), then dropped."""
        from snapctl.sanitizing.scratch_alias import temporary_alias

        with (
            Client.open(db_alias) as client,
            scratch_copy(client, _dump_flags(client.dumper)) as name,
        ):
            client.close()  # not held open while the rules and the dump run
            sanitizer.sanitize_database({"NAME": name})
            with temporary_alias(db_alias, {"NAME": name}) as alias:
                metadata = self.dump(alias, dest)
        metadata["database"] = client.database  # the live database's, not the copy's
        return metadata

    def restore(self, db_alias: str, src: Path) -> None:
        """Restore the MySQL/MariaDB database from src: load aside, then swap in, waiting for
        other sessions' locks at most the policy's lock timeout."""
        timeout = other_sessions.policy().lock_timeout
        with (
            Client.open(db_alias, lock_wait=lock_wait_seconds(timeout)) as client,
            tempfile.TemporaryDirectory(prefix=_WORK_PREFIX, dir=_work_root(src)) as workdir,
        ):
            swap = Swap(client, client.database, Path(workdir), self.jobs, lock_timeout=timeout)
            swap.check_names()
            recover(client, swap.live, timeout)
            swap.create()
            try:
                swap.run(src)
            except BaseException:
                if not (swap.keep or swap.leave):
                    with contextlib.suppress(OperationFailed):  # the first error matters
                        swap.drop()
                raise
            swap.drop()

    def prepare_copy(self, db_alias: str, src: Path, mark: str) -> PreparedCopy:
        """Load the snapshot at src into a copy beside the live database, named after
        ``mark``, for a later ``swap_in_copy()``; the live database is not touched."""
        with (
            Client.open(db_alias) as client,
            tempfile.TemporaryDirectory(prefix=_WORK_PREFIX, dir=_work_root(src)) as workdir,
        ):
            return prepared.prepare(client, src, mark, Path(workdir), self.jobs, self.keep_free)

    def swap_in_copy(self, db_alias: str, copy: PreparedCopy) -> PreparedCopy:
        """Swap the prepared copy's tables in, as a restore's swap, waiting for other
        sessions' locks at most the policy's lock timeout; return the retired database
        holding the previous tables, for ``drop_copy()``."""
        timeout = other_sessions.policy().lock_timeout
        with (
            Client.open(db_alias, lock_wait=lock_wait_seconds(timeout)) as client,
            tempfile.TemporaryDirectory(prefix=_WORK_PREFIX) as workdir,
        ):
            return prepared.swap_in(client, copy, Path(workdir), timeout)

    def drop_copy(self, db_alias: str, copy: PreparedCopy) -> None:
        """Drop a prepared copy (found by its mark when its name is empty) or a retired
        database; one already gone, or not this connector's, is left alone."""
        with Client.open(db_alias) as client:
            prepared.drop(client, copy)
