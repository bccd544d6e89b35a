"""Scratch copies for sanitized dumps: ``<NAME>_snapctl_scratch_<8 hex>`` on the live
database's server, made like it (swap.create_database_sql) and filled by ``pg_dump |
pg_restore`` streaming, with nothing written to disk on this machine. The live database is
only read (one pg_dump, as a plain dump reads it). The copy is dropped when the dump ends,
fails or is interrupted; one a killed dump left is dropped by the next sanitized dump of the
database (leftovers.drop_leftovers, ``kinds=("scratch",)``)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

from snapctl import notices
from snapctl.connectors import _process
from snapctl.connectors.postgres.connection import Libpq, connect, maintenance_database
from snapctl.connectors.postgres.leftovers import drop_leftovers, swap_prefix
from snapctl.connectors.postgres.programs import client_program
from snapctl.connectors.postgres.quoting import literal
from snapctl.connectors.postgres.swap import create_database_sql, drop_database_sql
from snapctl.connectors.postgres.target import inspect_target
from snapctl.errors import ConfigurationError, OperationFailed

SCRATCH = "scratch"
# The roles owning what a dump of the database holds: pg_restore keeps them if we may.
_OWNERS = """
SELECT coalesce(json_agg(DISTINCT pg_get_userbyid(o.owner)), '[]') FROM (
  SELECT c.relowner AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
  UNION SELECT n.nspowner FROM pg_namespace n
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
  UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema') o
"""


def scratch_name(database: str) -> str:
    return f"{swap_prefix(database)}{SCRATCH}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def scratch_copy(db_alias: str) -> Iterator[str]:
    """A private copy of the alias's database on its server, filled, named; dropped on the
    way out whatever happens."""
    with connect(db_alias) as pg:
        owners = set(pg.server.value(_OWNERS, what=f"reading the owners in '{db_alias}'"))
        info = inspect_target(pg, owners)
        database = info["database"]
        if not info["createdb"] and not info["superuser"]:
            raise ConfigurationError(
                f"a sanitized dump of '{db_alias}' makes a scratch copy of database "
                f'"{database}" on its server, which needs CREATEDB: ALTER ROLE '
                f'"{info["user"]}" CREATEDB'
            )
        admin_db = maintenance_database(pg, database)
        if admin_db is None:
            raise ConfigurationError(
                f"a sanitized dump of '{db_alias}' needs the 'postgres' or 'template1' "
                "database beside it, to make its scratch copy, and neither can be reached"
            )
        drop_leftovers(pg, database, admin_db, kinds=(SCRATCH,))  # a killed dump's copies
        name = scratch_name(database)
        version = info["server_version_num"]
        what = f"making a scratch copy of '{db_alias}' to sanitize"
        try:
            if not _copy_by_template(pg, info, name, admin_db, what):
                pg.server.query(*create_database_sql(name, info), database=admin_db, what=what)
                _fill(pg, name, [] if info["owners_ok"] else ["--no-owner"], what)
            yield name
        finally:
            try:
                pg.server.query(drop_database_sql(name, version), database=admin_db, what=what)
            except OperationFailed as exc:  # it holds real values: never left unsaid
                notices.notice(
                    f"the scratch copy {name} of '{db_alias}' could not be dropped ({exc}); "
                    "the next sanitized dump drops it, or run: DROP DATABASE "
                    f'"{name}" WITH (FORCE)'
                )


def _copy_by_template(pg: Libpq, info: dict[str, Any], name: str, admin_db: str, what: str) -> bool:
    """Copy the database by ``CREATE DATABASE ... TEMPLATE`` where nobody else is connected
    to it: the server copies its files (0.65 s against 7 s for the streamed copy of a 280 MB
    database, measured). A session that connects meanwhile waits for the copy, so a database
    in use (any other session) is copied by streaming instead, which never blocks one; so is
    one whose copy fails (a session came in first). False when not copied so."""
    database = info["database"]
    pg.server.close()
    # Ours, closed a moment ago, may still be listed for a few ms: they are left out by pid.
    ours = ", ".join(str(pid) for pid in sorted(pg.server.pids)) or "0"
    others = pg.server.value(
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = {literal(database)} "
        f"AND pid <> pg_backend_pid() AND pid NOT IN ({ours}) "
        "AND backend_type <> 'autovacuum worker'",
        database=admin_db,
        what=what,
    )
    if others:
        return False
    version = info["server_version_num"]
    strategy = "file_copy" if version >= 150000 else None
    try:
        pg.server.query(
            *create_database_sql(name, info, template=database, strategy=strategy),
            database=admin_db,
            what=what,
        )
    except OperationFailed:
        pg.server.query(drop_database_sql(name, version), database=admin_db, what=what)
        return False
    return True


def _fill(pg: Libpq, name: str, owner_flags: list[str], what: str) -> None:
    """``pg_dump | pg_restore`` from the live database into the copy, streamed."""
    pg.server.close()  # not held open through the copy
    _process.pipe(
        [client_program("pg_dump"), "-w", "--format=custom", "--compress=0"],
        [
            client_program("pg_restore"),
            "-w",
            "--exit-on-error",
            *owner_flags,
            "--dbname",
            name,
        ],
        what=what,
        env=pg.env,
        secrets=pg.secrets,
    )
