"""The swap restore: a new database made like the original (from template0, filled by
``pg_restore --jobs N``, or copied from a template), then put in the original's place by two
renames in one transaction, and the original dropped. See docs/postgres.md."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from snapctl import other_sessions
from snapctl.connectors.postgres.blocking_sessions import (
    TERMINATE_LOOP,
    OtherSession,
    announce_ending,
    blocked,
    blocking,
    clear_the_way,
    sessions_on,
)
from snapctl.connectors.postgres.connection import Libpq
from snapctl.connectors.postgres.leftovers import drop_leftovers, swap_prefix
from snapctl.connectors.postgres.programs import client_program
from snapctl.connectors.postgres.quoting import do_block, ident, literal
from snapctl.errors import OperationFailed

_MAX_JOBS = 8

# The swap's transaction tries its renames this often, this many seconds apart.
_SWAP_ATTEMPTS = 3
_SWAP_PAUSE = 0.5


def create_database_sql(
    name: str, info: dict[str, Any], template: str = "template0", strategy: str | None = None
) -> list[str]:
    """CREATE DATABASE like the original, then its grants and comment.

    From template0 it also takes the original's encoding and locale; from any other template
    (a copy of the original made earlier) it keeps the template's, which its indexes need.
    ``strategy`` (PostgreSQL 15+: ``wal_log`` or ``file_copy``) says how the server copies it.
    """
    row = info["row"]
    parts = [f"CREATE DATABASE {ident(name)} TEMPLATE {ident(template)}"]
    if strategy:
        parts.append(f"STRATEGY {strategy}")
    parts.append(f"OWNER {ident(info['owner'])}")
    if template == "template0":
        parts.append(f"ENCODING {literal(info['encoding'])}")
        parts.append(f"LC_COLLATE {literal(row['datcollate'])} LC_CTYPE {literal(row['datctype'])}")
        provider = row.get("datlocprovider")
        locale = row.get("datlocale") or row.get("daticulocale")
        if provider == "i":
            parts.append(f"LOCALE_PROVIDER icu ICU_LOCALE {literal(locale)}")
            if row.get("daticurules"):
                parts.append(f"ICU_RULES {literal(row['daticurules'])}")
        elif provider == "b":
            parts.append(f"LOCALE_PROVIDER builtin BUILTIN_LOCALE {literal(locale)}")
    if int(row.get("datconnlimit", -1)) != -1:
        parts.append(f"CONNECTION LIMIT {int(row['datconnlimit'])}")
    if info["tablespace"] != "pg_default":
        parts.append(f"TABLESPACE {ident(info['tablespace'])}")
    statements = [" ".join(parts)]
    if info["has_acl"]:
        statements.append(f"REVOKE ALL ON DATABASE {ident(name)} FROM PUBLIC")
        statements.append(f"REVOKE ALL ON DATABASE {ident(name)} FROM {ident(info['owner'])}")
        for grant in info["acl"]:
            grantee = ident(grant["grantee"]) if grant["grantee"] else "PUBLIC"
            option = " WITH GRANT OPTION" if grant["grantable"] else ""
            statements.append(
                f"GRANT {grant['privilege']} ON DATABASE {ident(name)} TO {grantee}{option}"
            )
    if info["comment"] is not None:
        statements.append(f"COMMENT ON DATABASE {ident(name)} IS {literal(info['comment'])}")
    return statements


def drop_database_sql(name: str, server_version_num: int) -> str:
    force = " WITH (FORCE)" if server_version_num >= 130000 else ""
    return f"DROP DATABASE IF EXISTS {ident(name)}{force}"


def replace_by_swap(
    pg: Libpq,
    info: dict[str, Any],
    admin_db: str,
    fill: Callable[[str], None] | None = None,
    template: str = "template0",
    strategy: str | None = None,
) -> None:
    """Replace the database with a new one, made like it from ``template`` and then filled by
    ``fill(new name)``, by the renames of :func:`swap`; drop the previous one afterwards.
    First drop what killed restores of this database left (:func:`drop_leftovers`).

    A session that snapctl may not end would make the renames fail, so it fails the restore
    before the new database is made and filled (:func:`clear_the_way`), not after; the
    sessions of our role are announced right before the renames end them.

    Until the renames commit the original is untouched; any failure (or interrupt) before
    them drops the new database and leaves the original as it was.
    """
    database = info["database"]
    drop_leftovers(pg, database, admin_db)
    clear_the_way(pg, database, admin_db, in_place=False)
    token = secrets.token_hex(4)
    fresh = f"{swap_prefix(database)}new_{token}"
    old = f"{swap_prefix(database)}old_{token}"
    what = f"restore of '{pg.alias}' (database unchanged)"
    try:
        pg.server.query(
            *create_database_sql(fresh, info, template, strategy), database=admin_db, what=what
        )
        if fill is not None:
            fill(fresh)
        announce_ending(database, clear_the_way(pg, database, admin_db, in_place=False))
        swap(pg, database, fresh, old, admin_db)
    except BaseException:
        with contextlib.suppress(OperationFailed):
            pg.server.query(
                drop_database_sql(fresh, info["server_version_num"]),
                database=admin_db,
                what=f"dropping {fresh}",
            )
        raise
    pg.server.query(
        drop_database_sql(old, info["server_version_num"]),
        database=admin_db,
        what=f"restore of '{pg.alias}' succeeded, but dropping the previous database {old}",
    )


def restore_by_swap(
    pg: Libpq,
    src: Path,
    info: dict[str, Any],
    admin_db: str,
    owner_flags: list[str],
) -> None:
    what = f"restore of '{pg.alias}' (database unchanged)"

    def fill(fresh: str) -> None:
        load(pg, src, fresh, owner_flags, what)

    replace_by_swap(pg, info, admin_db, fill)


def load(pg: Libpq, src: Path, database: str, owner_flags: list[str], what: str) -> None:
    """``pg_restore --jobs N`` of the archive into the new, empty ``database``."""
    jobs = str(max(1, min(os.cpu_count() or 1, _MAX_JOBS)))
    # Not held open through a long load: an idle connection may be cut meanwhile, and one
    # to template1 would block others' CREATE DATABASE.
    pg.server.close()
    pg.run(
        [
            client_program("pg_restore"),
            "-w",
            "--exit-on-error",
            "--jobs",
            jobs,
            *owner_flags,
            "--dbname",
            database,
            str(src),
        ],
        what,
    )


# The swap, ONE transaction (a DO block is one statement): end the other sessions (unless
# the policy forbids it: then clear_the_way has made sure there are none), rename
# the original away (which waits up to 5 s for the ended sessions to go, and from then on
# holds off new connections), rename the new database in its place. A session that is still
# there (one we may not end, or one that connected in between) makes the first rename fail:
# that attempt is rolled back and, after a pause, tried again with a fresh look at
# pg_stat_activity (which is otherwise read once per transaction); the last failure is
# raised and rolls everything back.
_SWAP = """
DECLARE session record;
BEGIN
{checks}  FOR attempt IN 1..{attempts} LOOP
    PERFORM pg_stat_clear_snapshot();
{terminate}
    BEGIN
      EXECUTE {rename_old};
      EXIT;
    EXCEPTION WHEN object_in_use THEN
      IF attempt = {attempts} THEN
        RAISE;
      END IF;
      PERFORM pg_sleep({pause});
    END;
  END LOOP;
{finish}  EXECUTE {rename_new};
END
"""


def swap_sql(
    database: str,
    fresh: str,
    old: str,
    *,
    terminate: bool = True,
    finish: Sequence[str] = (),
    checks: str = "",
) -> str:
    """The one statement that puts ``fresh`` in the place of ``database`` (see ``_SWAP``),
    running ``checks`` (PL/pgSQL that raises to stop) first and ``finish`` (statements on
    ``fresh``) just before the last rename."""
    return do_block(
        _SWAP.format(
            checks=checks,
            attempts=_SWAP_ATTEMPTS,
            pause=_SWAP_PAUSE,
            terminate=TERMINATE_LOOP.format(database=literal(database)) if terminate else "",
            rename_old=literal(f"ALTER DATABASE {ident(database)} RENAME TO {ident(old)}"),
            rename_new=literal(f"ALTER DATABASE {ident(fresh)} RENAME TO {ident(database)}"),
            finish="".join(f"  EXECUTE {literal(statement)};\n" for statement in finish),
        )
    )


def swap(
    pg: Libpq, database: str, fresh: str, old: str, admin_db: str, finish: Sequence[str] = ()
) -> None:
    """Put ``fresh`` in the place of ``database``: the other sessions on it ended and both
    renames in one transaction, so a failure or a kill at any moment leaves all or nothing.
    A session that connected just before and that we may not end fails it: it is named."""
    terminate = other_sessions.policy().terminate
    try:
        pg.server.query(
            swap_sql(database, fresh, old, terminate=terminate, finish=finish),
            database=admin_db,
            what=f"restore of '{pg.alias}' (database unchanged)",
        )
    except OperationFailed as exc:
        blockers: list[OtherSession] = []
        with contextlib.suppress(OperationFailed):  # the server gone: its failure says so
            sessions = sessions_on(pg, database, admin_db, locks=False)
            blockers = blocking(sessions, in_place=False, terminate=terminate)
        if not blockers:
            raise
        raise blocked(pg, database, blockers, in_place=False, waited=0) from exc
