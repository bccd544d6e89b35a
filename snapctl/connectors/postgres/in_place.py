"""The in-place restore: in ONE transaction, drop what our role owns and replay the snapshot's
SQL through psql, so that any failure rolls all of it back. See docs/postgres.md."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from snapctl import other_sessions
from snapctl.connectors import _process
from snapctl.connectors.postgres.blocking_sessions import (
    OtherSession,
    announce_ending,
    blocked,
    clear_the_way,
    sessions_on,
    terminate_sessions_sql,
)
from snapctl.connectors.postgres.connection import Libpq
from snapctl.connectors.postgres.programs import (
    RESTRICT_RELEASES,
    client_program,
    restricts_meta_commands,
)
from snapctl.errors import ConfigurationError, OperationFailed

# Drops what our role owns: its schemas whole (but never public, which dumps assume exists),
# and its relations, routines, types, extensions and large objects in the other schemas.
# Names are collected before the first drop: a cascade may remove later entries, hence IF
# EXISTS, and a dropped routine's regprocedure would no longer print as a name. Members of
# extensions, identity/serial sequences and partitions go with what they belong to.
_DROP_OWNED = r"""
DO $snapctl$
DECLARE
  statement text;
  statements text[];
BEGIN
  SELECT coalesce(array_agg(s ORDER BY ord, s), '{}') INTO statements FROM (
    SELECT 1 AS ord, format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname) AS s
      FROM pg_namespace n
     WHERE pg_has_role(n.nspowner, 'USAGE') AND n.nspname <> 'public'
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 2, format('DROP EXTENSION IF EXISTS %I CASCADE', e.extname)
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE pg_has_role(e.extowner, 'USAGE') AND n.nspname <> 'pg_catalog'
    UNION ALL
    SELECT 3, format('DROP %s IF EXISTS %I.%I CASCADE',
                     CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                    WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                    ELSE 'TABLE' END, n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND pg_has_role(c.relowner, 'USAGE')
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                       AND d.objid = c.oid AND d.deptype IN ('e', 'i', 'a'))
    UNION ALL
    SELECT 4, format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE pg_has_role(p.proowner, 'USAGE')
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                       AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 5, format('DROP TYPE IF EXISTS %s CASCADE', t.oid::regtype)
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE pg_has_role(t.typowner, 'USAGE') AND t.typtype IN ('d', 'e', 'r', 'c')
       AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                       AND d.objid = t.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 6, format('SELECT lo_unlink(%s)', l.oid)
      FROM pg_largeobject_metadata l WHERE pg_has_role(l.lomowner, 'USAGE')
  ) AS planned(ord, s);
  FOREACH statement IN ARRAY statements LOOP
    EXECUTE statement;
  END LOOP;
END
$snapctl$
"""


def restore_in_place(pg: Libpq, src: Path, info: dict[str, Any], owner_flags: list[str]) -> None:
    pg_restore = client_program("pg_restore")
    safe, version = restricts_meta_commands(pg_restore)
    if not safe:
        raise ConfigurationError(
            f"restoring '{pg.alias}' in place replays the snapshot through psql, and pg_restore "
            f"{version} does not stop a crafted snapshot from running commands there "
            f"(CVE-2025-8714); install postgresql-client {RESTRICT_RELEASES} or newer, or "
            "grant the role CREATEDB so that the restore swaps databases instead"
        )
    psql = client_program("psql")
    database = info["database"]
    policy = other_sessions.policy()
    announce_ending(database, clear_the_way(pg, database, None, in_place=True))
    if policy.terminate:
        pg.server.query(terminate_sessions_sql(database), what=f"restore of '{pg.alias}'")
    try:
        _process.pipe(
            [pg_restore, *owner_flags, "--file", "-", str(src)],
            # One transaction around the drops and the whole script: all of it or none.
            [
                psql,
                "-X",
                "-w",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-c",
                f"SET lock_timeout = '{lock_timeout_ms(policy.lock_timeout)}ms'",
                "-c",
                _DROP_OWNED,
                "-f",
                "-",
            ],
            what=f"restore of '{pg.alias}' (rolled back, database unchanged)",
            env=pg.env,
            secrets=pg.secrets,
        )
    except OperationFailed as exc:
        if "lock timeout" not in str(exc):
            raise
        # A session that took a lock after clear_the_way looked: name it.
        holders: list[OtherSession] = []
        with contextlib.suppress(OperationFailed):  # the server gone: its failure says so
            holders = [s for s in sessions_on(pg, database, None, locks=True) if s.locks]
        if not holders:
            raise
        raise blocked(pg, database, holders, in_place=True, waited=policy.lock_timeout) from exc


def lock_timeout_ms(seconds: float) -> int:
    """The policy's lock timeout for ``SET lock_timeout``, where 0 would mean no limit at
    all: 0 s (do not wait) becomes 1 ms."""
    return max(1, round(seconds * 1000))
