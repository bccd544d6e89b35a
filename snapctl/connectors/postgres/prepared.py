"""Prepared copies on PostgreSQL: the swap restore cut in two. ``prepare`` makes the new
database and fills it ahead of time (``pg_restore``, or a copy of a postgres-template
snapshot), then closes it to connections and writes the mark on it; ``swap_in`` checks the
mark and the live database, and renames the copy in, leaving the previous database under an
``old_`` name for ``drop`` later. Shared by both PostgreSQL connectors; see docs/postgres.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

from snapctl import other_sessions
from snapctl.connectors import _process
from snapctl.connectors._disk_room import check_room
from snapctl.connectors.api import PreparedCopy
from snapctl.connectors.postgres.blocking_sessions import (
    OtherSession,
    announce_ending,
    clear_the_way,
    sessions_sql,
    terminate_sessions_sql,
)
from snapctl.connectors.postgres.connection import (
    Libpq,
    connect,
    first_query,
    maintenance_database,
)
from snapctl.connectors.postgres.leftovers import drop_leftovers, swap_prefix
from snapctl.connectors.postgres.programs import client_program
from snapctl.connectors.postgres.quoting import ident, literal
from snapctl.connectors.postgres.swap import (
    create_database_sql,
    drop_database_sql,
    swap,
    swap_sql,
)
from snapctl.connectors.postgres.target import can_swap, inspect_target
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed, SnapctlError

# What of the live database the copy was made like (create_database_sql): if any of it
# changes before the swap, the swap would lose the change. Read by name from the maintenance
# database, with the copy's comment and owner: the instant swap connects to one database.
_LIKE_LIVE = """(SELECT json_build_object(
      'owner', pg_get_userbyid(d.datdba),
      'encoding', pg_encoding_to_char(d.encoding),
      'tablespace', d.dattablespace,
      'comment', shobj_description(d.oid, 'pg_database'),
      'acl', d.datacl::text,
      'settings', (SELECT count(*) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid),
      'slots', (SELECT count(*) FROM pg_replication_slots s WHERE s.database = d.datname),
      'collate', d.datcollate, 'ctype', d.datctype, 'connlimit', d.datconnlimit,
      'provider', to_jsonb(d) -> 'datlocprovider')
    FROM pg_database d WHERE d.datname = {live})"""
_LIVE_AND_COPY = """
SELECT json_build_object(
  'like_live', {like_live},
  'copy', (SELECT json_build_object('comment', shobj_description(c.oid, 'pg_database'),
                                    'owns', pg_has_role(c.datdba, 'USAGE'),
                                    'closed', {closed})
           FROM pg_database c WHERE c.datname = {copy}))
"""
# Whether copy ``c`` is as prepare left it: closed to connections, and nobody on it.
_CLOSED = """(NOT c.datallowconn
   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = c.datname))"""
# The checks of swap_in, inside the swap's transaction, for the swap by psql: each failure
# raises an exception whose message starts with a word that _PSQL_REFUSALS knows.
_CHECKS = """  DECLARE
    copy_state record;
    changed text;
  BEGIN
    SELECT shobj_description(c.oid, 'pg_database') AS comment,
           pg_has_role(c.datdba, 'USAGE') AS owns, {closed} AS closed
      INTO copy_state FROM pg_database c WHERE c.datname = {copy};
    IF NOT FOUND OR NOT copy_state.owns THEN RAISE EXCEPTION 'snapctl_gone'; END IF;
    IF NOT copy_state.closed THEN RAISE EXCEPTION 'snapctl_opened'; END IF;
    IF copy_state.comment IS DISTINCT FROM {comment} THEN
      RAISE EXCEPTION 'snapctl_unmarked';
    END IF;
    IF {like_live} IS NULL THEN RAISE EXCEPTION 'snapctl_no_live'; END IF;
    -- A session we may not end: the driver's way waits for it, saying so.
    IF EXISTS (SELECT 1 FROM pg_stat_activity a
               WHERE a.datname = {live} AND a.pid <> pg_backend_pid()
                 AND a.usesysid IS NOT NULL
                 AND coalesce(to_jsonb(a) ->> 'backend_type', 'client backend')
                     = 'client backend'
                 AND (NOT pg_has_role(a.usesysid, 'MEMBER') OR NOT {terminate})) THEN
      RAISE EXCEPTION 'snapctl_blocked';
    END IF;
    SELECT string_agg(l.key, ', ' ORDER BY l.key) INTO changed
      FROM jsonb_each({like_live}::jsonb) l
      WHERE l.value IS DISTINCT FROM ({expected}::jsonb -> l.key);
    IF changed IS NOT NULL THEN RAISE EXCEPTION 'snapctl_changed %', changed; END IF;
  END;
"""
# Where the server keeps its files, when our role may know it, and how big ``database`` is.
_ROOM = """
SELECT json_build_object(
  'data_directory', CASE WHEN r.rolsuper OR pg_has_role('pg_read_all_settings', 'MEMBER')
                    THEN current_setting('data_directory') END,
  'size', pg_database_size({database}))
FROM pg_roles r WHERE r.rolname = current_user
"""


def copy_name(database: str, mark: str) -> str:
    """``<database>_snapctl_prep_<8 hex>``, named after the mark so that a preparation killed
    before it said the name can be found again (see ``drop``)."""
    return f"{swap_prefix(database)}prep_{hashlib.sha256(mark.encode()).hexdigest()[:8]}"


def copy_comment(database: str, mark: str) -> str:
    """The copy's comment while it waits: what it is, to a human, and the mark, for us."""
    return f"snapctl prepared copy of database {database}; mark {mark}"


def _live_and_copy(pg: Libpq, admin_db: str, database: str, copy: str) -> dict[str, Any]:
    like_live = _LIKE_LIVE.format(live=literal(database))
    state: dict[str, Any] = pg.server.value(
        _LIVE_AND_COPY.format(like_live=like_live, copy=literal(copy), closed=_CLOSED),
        database=admin_db,
        what=f"looking at database \"{database}\" of '{pg.alias}' and its prepared copy",
    )
    return state


def _server_host(pg: Libpq) -> str | None:
    return pg.env.get("PGHOST") or pg.env.get("PGHOSTADDR")


def _check_room(pg: Libpq, database: str, admin_db: str, extra: int, keep_free: float) -> None:
    room = pg.server.value(
        _ROOM.format(database=literal(database)), database=admin_db, what="measuring the room"
    )
    check_room(
        f"'{pg.alias}'",
        _server_host(pg),
        room["data_directory"],
        max(int(room["size"]), extra),
        keep_free,
    )


def prepare(
    db_alias: str,
    mark: str,
    keep_free: float,
    fill: Callable[[Libpq, dict[str, Any], str], None] | None,
    *,
    owners: set[str] | None = None,
    template: str = "template0",
    strategy: str | None = None,
    expected_size: int = 0,
) -> PreparedCopy:
    """Make the copy for ``mark`` like the live database (from ``template``), fill it with
    ``fill(pg, info, name)`` (info: the live database, as inspect_target says), close it to
    connections and mark it. Dropped on any failure or interrupt."""
    with connect(db_alias) as pg:
        info = inspect_target(pg, owners or set())
        database = info["database"]
        if not can_swap(info):
            raise ConfigurationError(
                f"database \"{database}\" of '{db_alias}' cannot be replaced by a swap (our role "
                "needs CREATEDB and ownership, and the database no per-database settings or "
                "replication slots), and a prepared copy can only be swapped in"
            )
        admin_db = maintenance_database(pg, database)
        if admin_db is None:
            raise ConfigurationError(
                f"preparing a copy of '{db_alias}' needs the 'postgres' or 'template1' "
                "database beside it, and neither can be reached"
            )
        # What swaps retired and a kill kept from dropping: it would count against the room.
        drop_leftovers(pg, database, admin_db, kinds=("old",))
        _check_room(pg, database, admin_db, expected_size, keep_free)
        name = copy_name(database, mark)
        like_live = _live_and_copy(pg, admin_db, database, name)["like_live"]
        version = info["server_version_num"]
        what = f"preparing a copy of '{db_alias}'"
        try:
            pg.server.query(
                drop_database_sql(name, version),  # one a killed preparation left
                *create_database_sql(name, info, template, strategy),
                database=admin_db,
                what=what,
            )
            if fill is not None:
                fill(pg, info, name)
            ((size, others),) = pg.server.query(
                # Nobody may connect until it is swapped in: nothing can change it meanwhile.
                f"ALTER DATABASE {ident(name)} WITH ALLOW_CONNECTIONS false",
                terminate_sessions_sql(name),
                f"COMMENT ON DATABASE {ident(name)} IS {literal(copy_comment(database, mark))}",
                f"SELECT pg_database_size({literal(name)}), (SELECT count(*) FROM "
                f"pg_stat_activity WHERE datname = {literal(name)} "
                "AND NOT pg_has_role(usesysid, 'MEMBER'))",
                database=admin_db,
                what=what,
            )
            if others:  # another role's session came in while it was filled
                raise OperationFailed(
                    f"{what}: another role's session connected to the copy {name} while it "
                    "was filled; it was dropped, prepare again"
                )
        except BaseException:
            with contextlib.suppress(OperationFailed):
                pg.server.query(drop_database_sql(name, version), database=admin_db, what=what)
            raise
    return PreparedCopy(name, mark, int(size), {"like_live": like_live})


def swap_in(db_alias: str, copy: PreparedCopy) -> PreparedCopy:
    """Check the copy and the live database, then rename the copy in: one transaction that
    also reopens it and gives it the live database's comment. The previous database stays as
    ``<database>_snapctl_old_<8 hex>``, returned for ``drop``.

    First as one ``psql`` run that checks and swaps in one transaction: 10-20 ms, where
    importing the driver alone takes 0.1-0.2 s, most of an instant restore. Anything but a
    refusal of the copy (another role's session in the way, no ``postgres`` database, no
    psql) leaves everything as it was and goes the driver's way, which waits for sessions
    and names them."""
    with connect(db_alias) as pg:
        database = pg.env.get("PGDATABASE")
        if database:
            swapped = _swap_in_by_psql(pg, database, copy)
            if swapped is not None:
                return swapped
    return _swap_in_by_driver(db_alias, copy)


# What a refusal raised by _CHECKS means, and the error it becomes.
_PSQL_REFUSALS: dict[str, tuple[type[SnapctlError], str]] = {
    "snapctl_gone": (IntegrityError, "the prepared copy {copy} of '{alias}' is gone"),
    "snapctl_unmarked": (
        IntegrityError,
        "database {copy} on the server of '{alias}' does not carry the mark of the copy "
        "snapctl prepared",
    ),
    "snapctl_opened": (
        IntegrityError,
        "the prepared copy {copy} of '{alias}' was opened to connections since it was "
        "prepared, and may have been changed",
    ),
    "snapctl_no_live": (ConfigurationError, "database \"{database}\" of '{alias}' does not exist"),
    "snapctl_changed": (
        ConfigurationError,
        "database \"{database}\" of '{alias}' has changed since its copy was prepared "
        "({detail}), which the copy would not keep",
    ),
}


def _swap_in_by_psql(pg: Libpq, database: str, copy: PreparedCopy) -> PreparedCopy | None:
    """The swap as one psql run on the ``postgres`` database; None when it did not happen
    for another reason than a refusal of the copy (then nothing changed)."""
    try:
        psql = client_program("psql")
    except ConfigurationError:
        return None
    like_live = copy.metadata.get("like_live") or {}
    if copy.name != copy_name(database, copy.mark) or not like_live:
        return None
    old = f"{swap_prefix(database)}old_{secrets.token_hex(4)}"
    policy = other_sessions.policy()
    checks = _CHECKS.format(
        copy=literal(copy.name),
        comment=literal(copy_comment(database, copy.mark)),
        like_live=_LIKE_LIVE.format(live=literal(database)),
        closed=_CLOSED,
        expected=literal(json.dumps(like_live)),
        live=literal(database),
        terminate="true" if policy.terminate else "false",
    )
    comment = like_live.get("comment")
    script = "\n".join(
        [
            # A lock the renames wait for (a copy of the database being made, say) fails
            # the swap after the lock timeout, as other sessions' locks do, never hangs it.
            f"SET lock_timeout = {int(policy.lock_timeout * 1000) or 1};",
            # The sessions the swap ends, to say so (ours only: another role's fail it).
            sessions_sql(database, (), locks=False) + ";",
            swap_sql(
                database,
                copy.name,
                old,
                terminate=policy.terminate,
                finish=[
                    f"ALTER DATABASE {ident(copy.name)} WITH ALLOW_CONNECTIONS true",
                    f"COMMENT ON DATABASE {ident(copy.name)} IS "
                    + ("NULL" if comment is None else literal(comment)),
                ],
                checks=checks,
            )
            + ";",
        ]
    )
    argv = [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--dbname", "postgres"]
    with _process.private_file(script, suffix=".sql") as path:
        try:
            out = pg.run([*argv, "-f", str(path)], f"restore of '{pg.alias}' (database unchanged)")
        except OperationFailed as exc:
            for word, (error, message) in _PSQL_REFUSALS.items():
                found = re.search(rf"\b{word}\b ?([^\n]*)", str(exc))
                if found:
                    raise error(
                        message.format(
                            copy=copy.name, alias=pg.alias, database=database, detail=found[1]
                        )
                    ) from None
            return None
    sessions = [OtherSession(**row) for row in json.loads(out.strip() or "[]")]
    if policy.terminate:
        announce_ending(database, [session for session in sessions if session.ours])
    return PreparedCopy(old)


def _swap_in_by_driver(db_alias: str, copy: PreparedCopy) -> PreparedCopy:
    with connect(db_alias, programs=False) as pg:
        database = pg.server.target or first_query(pg, "SELECT current_database()")
        admin_db = maintenance_database(pg, database)
        if admin_db is None:
            raise ConfigurationError(
                f"swapping in a prepared copy of '{db_alias}' needs the 'postgres' or "
                "'template1' database beside it, and neither can be reached"
            )
        if copy.name != copy_name(database, copy.mark):
            raise IntegrityError(f"{copy.name} is not a prepared copy of '{db_alias}'")
        state = _live_and_copy(pg, admin_db, database, copy.name)
        found, live = state["copy"], state["like_live"]
        if found is None or not found["owns"]:
            raise IntegrityError(f"the prepared copy {copy.name} of '{db_alias}' is gone")
        if found["comment"] != copy_comment(database, copy.mark):
            raise IntegrityError(
                f"database {copy.name} on the server of '{db_alias}' does not carry the mark "
                "of the copy snapctl prepared"
            )
        if not found["closed"]:
            raise IntegrityError(
                f"the prepared copy {copy.name} of '{db_alias}' was opened to connections "
                "since it was prepared, and may have been changed"
            )
        if live is None:
            raise ConfigurationError(f"database \"{database}\" of '{db_alias}' does not exist")
        prepared_like = copy.metadata.get("like_live") or {}
        changed = [key for key, value in live.items() if prepared_like.get(key) != value]
        if changed:
            raise ConfigurationError(
                f"database \"{database}\" of '{db_alias}' has changed since its copy was "
                f"prepared ({', '.join(changed)}), which the copy would not keep"
            )
        old = f"{swap_prefix(database)}old_{secrets.token_hex(4)}"
        comment = live["comment"]
        finish = [
            f"ALTER DATABASE {ident(copy.name)} WITH ALLOW_CONNECTIONS true",
            f"COMMENT ON DATABASE {ident(copy.name)} IS "
            + ("NULL" if comment is None else literal(comment)),
        ]
        announce_ending(database, clear_the_way(pg, database, admin_db, in_place=False))
        swap(pg, database, copy.name, old, admin_db, finish=finish)
    return PreparedCopy(old)


_SIDE_DATABASE = re.compile(r"(prep|old)_[0-9a-f]{8}")
_DROP_IF_OURS = """
SELECT EXISTS (SELECT 1 FROM pg_database d
               WHERE d.datname = {name} AND pg_has_role(d.datdba, 'USAGE'))
"""


def drop(db_alias: str, copy: PreparedCopy) -> None:
    """Drop a prepared copy (by name, or by its mark) or a retired database: only one of
    ours named as this database's; sessions on it (a killed preparation's pg_restore) are
    ended."""
    from snapctl.django_env import database_settings

    database = str(database_settings(db_alias).get("NAME") or "")
    name = copy.name or copy_name(database, copy.mark)
    prefix = swap_prefix(database)
    if not (name.startswith(prefix) and _SIDE_DATABASE.fullmatch(name[len(prefix) :])):
        return
    with connect(db_alias, programs=False) as pg:
        admin_db = maintenance_database(pg, name)
        what = f"dropping {name} of '{db_alias}'"
        if pg.server.value(_DROP_IF_OURS.format(name=literal(name)), database=admin_db, what=what):
            version = int(pg.server.value("SHOW server_version_num", database=admin_db, what=what))
            pg.server.query(drop_database_sql(name, version), database=admin_db, what=what)
