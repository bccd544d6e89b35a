"""PostgreSQL (and PostGIS), with pg_dump and pg_restore, and the driver for the rest.

A dump is one ``pg_dump --format=custom`` in a repeatable-read transaction. A restore
replaces the database with exactly the snapshot, by a swap (``pg_restore --jobs N`` into a
new database, then two renames in one transaction) or in place (drop our role's objects and
replay the SQL in one transaction), and creates a database that does not exist. The design,
the guarantees and the privileges each path needs: docs/postgres.md. The modules:
``connection`` (settings, password, the server), ``session`` (snapctl's own queries),
``programs`` (client programs and versions), ``archive`` (what an archive says),
``target`` (what the restore decides on), ``blocking_sessions`` (other sessions),
``swap`` and ``leftovers``, ``in_place``, ``missing_database``, and ``template`` (the
``postgres-template`` connector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snapctl.connectors._disk_room import KEEP_FREE
from snapctl.connectors.api import PreparedCopy, Sanitizer
from snapctl.connectors.postgres import prepared
from snapctl.connectors.postgres.archive import (
    ARCHIVE_HEAD,
    ARCHIVE_MAGIC,
    archive_owners,
    archive_versions,
    check_archive,
)
from snapctl.connectors.postgres.connection import (
    close_django_connection,
    connect,
    first_query,
    maintenance_database,
)
from snapctl.connectors.postgres.in_place import restore_in_place
from snapctl.connectors.postgres.missing_database import (
    inspect_or_missing,
    missing_database,
    missing_database_error,
    restore_into_missing,
)
from snapctl.connectors.postgres.programs import (
    client_program,
    older_pg_dump,
    restricts_meta_commands,
    version_num,
)
from snapctl.connectors.postgres.scratch import scratch_copy
from snapctl.connectors.postgres.swap import load, restore_by_swap
from snapctl.connectors.postgres.table_data import qualified_tables
from snapctl.connectors.postgres.target import can_swap, in_place_is_exact
from snapctl.errors import OperationFailed

__all__ = ["IN_PLACE_BELOW", "PostgresConnector"]

# Archives smaller than this restore in place even where the swap is possible: one
# transaction beats a new database, a parallel load, the renames and a DROP DATABASE below
# about 20 MB (a 1 MB snapshot: 0.35 s against 0.46 s; a 22 MB archive: the same time).
IN_PLACE_BELOW = 16 * 1024 * 1024


class PostgresConnector:
    """Back up and restore PostgreSQL databases using pg_dump and pg_restore."""

    name = "postgres"
    needs_app_registry = False  # reads settings.DATABASES only
    engines = ("postgresql", "postgis")
    binaries = ("pg_dump", "pg_restore", "psql")
    # Custom format without pg_dump's own compression (--compress=0): the store compresses
    # the artifact afterwards anyway. Measured on 200k rows (an 11 MB archive): -Z0 then
    # zstd -3 took 0.8 s for 4.2 MB; pg_dump's default gzip (-Z6, single-threaded) took
    # 1.1 s for 3.8 MB, which zstd cannot shrink further, and pg_restore must inflate it.
    extension = "pgdump"
    # pg_dump writes the archive front to back when its output cannot seek: the data blocks
    # then carry no offsets in the table of contents, and pg_restore (12+) finds them by
    # skipping from block to block, as fast here (2.3-2.5 s for a 300 MB archive either
    # way); the dump's compression and checksum run beside it instead of after it.
    dump_to_pipe = True
    exclude_data: tuple[str, ...] = ()  # pg_dump --exclude-table-data

    def __init__(self, in_place_below: int = IN_PLACE_BELOW, keep_free: float = KEEP_FREE) -> None:
        """``keep_free``: the share of the server's disk a prepared copy must leave free."""
        self.in_place_below = in_place_below
        self.keep_free = keep_free

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump the PostgreSQL database to dest (custom format) using pg_dump."""
        pg_dump = client_program("pg_dump")
        with connect(db_alias) as pg:
            # --no-sync: the store fsyncs the artifact it keeps.
            options = ["--format=custom", "--compress=0", "--no-sync"]
            # Rows left out, the tables kept with their indexes, constraints and sequences.
            options += [
                f"--exclude-table-data={pattern}"
                for pattern in qualified_tables(pg, self.exclude_data)
            ]
            what = f"pg_dump of '{db_alias}'"
            try:
                head = pg.run_into([pg_dump, "-w", *options], dest, what, ARCHIVE_HEAD)
            except OperationFailed as exc:
                if "is not currently accepting connections" in str(exc):
                    first_query(pg, "SELECT 1")  # says what to do about it
                missing = missing_database(pg, exc)
                if missing is not None:
                    raise missing_database_error(pg, missing, "dump") from None
                raise older_pg_dump(db_alias, exc) or exc from None
        if not head.startswith(ARCHIVE_MAGIC):
            raise OperationFailed(f"pg_dump of '{db_alias}' wrote no archive")
        server_text, pg_dump_version = archive_versions(head)
        return {
            "format": "custom",
            "server_version": server_text,
            "server_version_num": version_num(server_text),
            "pg_dump_version": pg_dump_version,
        }

    def dump_sanitized(self, db_alias: str, dest: Path, sanitizer: Sanitizer) -> dict[str, Any]:
        """Dump a sanitized scratch copy (scratch.py): the copy is made on the server and
        filled from the live database, the rules rewrite it, and it is dumped as the live
        database would be (pg_dump reads no dead row versions: no VACUUM is needed), then
        dropped."""
        from snapctl.sanitizing.scratch_alias import temporary_alias

        with scratch_copy(db_alias) as name:
            sanitizer.sanitize_database({"NAME": name})
            with temporary_alias(db_alias, {"NAME": name}) as alias:
                return self.dump(alias, dest)

    def restore(self, db_alias: str, src: Path) -> None:
        """Replace the PostgreSQL database with exactly the archive at src (docs/postgres.md)."""
        check_archive(src)
        pg_restore = client_program("pg_restore")
        owners = archive_owners(pg_restore, src)
        with connect(db_alias) as pg:
            info, missing = inspect_or_missing(pg, owners)
            if missing is not None:
                restore_into_missing(pg, src, missing)
                return
            assert info is not None
            owner_flags = [] if info["owners_ok"] else ["--no-owner"]
            close_django_connection(db_alias)
            small = src.stat().st_size < self.in_place_below and in_place_is_exact(info)
            # In place replays SQL through psql: only with a pg_restore that restricts it.
            swapping = can_swap(info) and not (small and restricts_meta_commands(pg_restore)[0])
            admin_db = maintenance_database(pg, info["database"]) if swapping else None
            if admin_db is not None:
                restore_by_swap(pg, src, info, admin_db, owner_flags)
            else:
                restore_in_place(pg, src, info, owner_flags)

    def prepare_copy(self, db_alias: str, src: Path, mark: str) -> PreparedCopy:
        """Load the archive into a side database, closed to connections until swapped in."""
        check_archive(src)
        pg_restore = client_program("pg_restore")

        def fill(pg: Any, info: dict[str, Any], name: str) -> None:
            owner_flags = [] if info["owners_ok"] else ["--no-owner"]
            load(pg, src, name, owner_flags, f"preparing a copy of '{db_alias}'")

        return prepared.prepare(
            db_alias,
            mark,
            self.keep_free,
            fill,
            owners=archive_owners(pg_restore, src),
            expected_size=src.stat().st_size,
        )

    def swap_in_copy(self, db_alias: str, copy: PreparedCopy) -> PreparedCopy:
        """Rename the prepared copy in; the previous database is returned, to drop later."""
        close_django_connection(db_alias)
        return prepared.swap_in(db_alias, copy)

    def drop_copy(self, db_alias: str, copy: PreparedCopy) -> None:
        """Drop a prepared copy or a retired database of this database, if ours."""
        prepared.drop(db_alias, copy)
