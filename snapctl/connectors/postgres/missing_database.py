"""A database that does not exist: telling it from other connection failures, saying how to
create it, and, for a restore by a role with CREATEDB, creating it and loading the snapshot."""

from __future__ import annotations

import contextlib
import getpass
import shlex
from pathlib import Path
from typing import Any

from snapctl import notices
from snapctl.connectors.postgres.archive import archive_database_options
from snapctl.connectors.postgres.connection import Libpq, maintenance_database
from snapctl.connectors.postgres.programs import client_program
from snapctl.connectors.postgres.quoting import ident, literal
from snapctl.connectors.postgres.swap import drop_database_sql, load
from snapctl.connectors.postgres.target import inspect_target
from snapctl.errors import ConfigurationError, OperationFailed

# From a maintenance database: whether {name} exists, and whether our role may create it and
# keep the archive's owners ({owners}, literals) in it.
_CREATOR = """
SELECT json_build_object(
  'exists', EXISTS (SELECT 1 FROM pg_database WHERE datname = {name}),
  'user', current_user,
  'superuser', r.rolsuper,
  'createdb', r.rolcreatedb,
  'owners_ok', (SELECT count(*) FROM pg_roles
                WHERE rolname IN ({owners}) AND pg_has_role(oid, 'MEMBER')) = {owner_count},
  'server_version_num', current_setting('server_version_num')::int)
FROM pg_roles r WHERE r.rolname = current_user
"""


def server_name(pg: Libpq) -> str:
    """Where the server is, as the settings say: ``db.example.com:5432``, or the socket
    directory."""
    host = pg.env.get("PGHOST") or "the local socket"
    port = pg.env.get("PGPORT")
    if host.startswith("/"):
        return f"{host} (port {port})" if port else host
    return f"{host}:{port}" if port else host


def missing_database(
    pg: Libpq, failure: OperationFailed, owners: set[str] | None = None
) -> dict[str, Any] | None:
    """When ``failure`` (connecting to the database, ours or pg_dump's) is because the
    database does not exist: what creating it needs to know, asked from a maintenance
    database; else None. The server's message may be translated, so it is only a hint (it
    names the database); the catalog decides, or, without a maintenance database to ask,
    the English message."""
    name = pg.server.target
    if not name or name not in str(failure):
        return None  # a refused connection, a timeout, a password: not about the database
    admin_db = maintenance_database(pg, name)
    if admin_db is None:
        if f'database "{name}" does not exist' not in str(failure):
            return None
        user = pg.env.get("PGUSER") or getpass.getuser()
        return {"database": name, "admin_db": None, "user": user, "createdb": False}
    names = ", ".join(literal(owner) for owner in sorted(owners or ())) or "NULL"
    found: dict[str, Any] = pg.server.value(
        _CREATOR.format(name=literal(name), owners=names, owner_count=len(owners or ())),
        database=admin_db,
        what=f"looking for database '{name}' of '{pg.alias}'",
    )
    if found["exists"]:
        return None
    return {**found, "database": name, "admin_db": admin_db}


def missing_database_error(pg: Libpq, missing: dict[str, Any], command: str) -> ConfigurationError:
    """One line: the database of the alias does not exist, and how to create it or fix NAME."""
    name, role = missing["database"], missing["user"]
    create = f"createdb -O {shlex.quote(role)} {shlex.quote(name)}"
    where = f"database '{name}' of '{pg.alias}' does not exist on {server_name(pg)}"
    if command == "dump":
        return ConfigurationError(
            f"{where}; create it (as an admin: {create}) or set "
            f"DATABASES['{pg.alias}']['NAME'] to the database to snapshot"
        )
    if missing["admin_db"] is None:
        why = "snapctl can reach neither the 'postgres' nor the 'template1' database to create it"
    else:
        why = f"role '{role}' may not create it (no CREATEDB)"
    return ConfigurationError(
        f"{where}, and {why}; have an admin run {create}, then restore again "
        f"(or set DATABASES['{pg.alias}']['NAME'] to the right database)"
    )


def create_missing_database(pg: Libpq, missing: dict[str, Any], options: list[str]) -> None:
    """CREATE DATABASE for the restore, owned by our role, from template0 with the
    snapshot's encoding and locale; where this server lacks them (a locale not installed, an
    older server without such an option), with the server's defaults, and says so."""
    name, admin_db = missing["database"], missing["admin_db"]
    what = f"creating database '{name}' for the restore of '{pg.alias}'"
    plain = f"CREATE DATABASE {ident(name)} TEMPLATE template0"
    made = f"created database '{name}' (owner '{missing['user']}') to restore into"
    try:
        pg.server.query(" ".join([plain, *options]), database=admin_db, what=what)
    except OperationFailed as exc:
        if not options:
            raise
        pg.server.query(plain, database=admin_db, what=what)
        notices.notice(
            f"{made}, with the server's default encoding and locale: the snapshot's "
            f"({' '.join(options)}) cannot be used here ({exc})"
        )
        return
    notices.notice(f"{made}{', with ' if options else ''}{' '.join(options)}")


def inspect_or_missing(
    pg: Libpq, owners: set[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(:func:`inspect_target`, None), or (None, :func:`missing_database`) when the
    database does not exist."""
    try:
        return inspect_target(pg, owners), None
    except OperationFailed as exc:
        missing = missing_database(pg, exc, owners)
        if missing is None:
            raise
        return None, missing


def restore_into_missing(pg: Libpq, src: Path, missing: dict[str, Any]) -> None:
    """Restore into a database that does not exist: create it when our role may (CREATEDB,
    or superuser), then load the snapshot into it; on any failure drop it again, so that
    the database is as it was, absent. Without the privilege, say how to create it."""
    if not (missing.get("createdb") or missing.get("superuser")) or missing["admin_db"] is None:
        raise missing_database_error(pg, missing, "restore")
    name = missing["database"]
    options = archive_database_options(client_program("pg_restore"), src)
    create_missing_database(pg, missing, options)
    owner_flags = [] if missing["owners_ok"] else ["--no-owner"]
    try:
        load(pg, src, name, owner_flags, f"restore of '{pg.alias}' (new database dropped again)")
    except BaseException:
        with contextlib.suppress(OperationFailed):
            pg.server.query(
                drop_database_sql(name, missing["server_version_num"]),
                database=missing["admin_db"],
                what=f"dropping {name}",
            )
        raise
