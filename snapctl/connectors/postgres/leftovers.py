"""The databases that killed swap restores left, ``<NAME>_snapctl_new_<8 hex>`` and
``..._old_<8 hex>``: their names, and dropping them before the next swap."""

from __future__ import annotations

import contextlib
import re

from snapctl.connectors.postgres.connection import Libpq
from snapctl.connectors.postgres.quoting import ident, literal, short_name
from snapctl.errors import OperationFailed

# Databases that a killed swap restore of {database} may have left: ours, nobody connected.
_LEFTOVERS = """
SELECT coalesce(json_agg(d.datname), '[]') FROM pg_database d
WHERE position({prefix} in d.datname) = 1 AND d.datname <> {database}
  AND pg_has_role(d.datdba, 'USAGE')
  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
"""


def swap_prefix(database: str) -> str:
    """What the swap's temporary databases for ``database`` are named with, before
    ``new_<8 hex>`` or ``old_<8 hex>``."""
    return f"{short_name(database, 40)}_snapctl_"


def drop_leftovers(
    pg: Libpq, database: str, admin_db: str, kinds: tuple[str, ...] = ("new", "old")
) -> None:
    """Drop the ``<database>_snapctl_new_<8 hex>`` and ``..._old_<8 hex>`` databases that
    killed restores left: only ours, only those nobody is connected to, and never another
    name (the postgres-template connector's snapshot copies lack ``new_``/``old_``). The
    caller holds the database's restore lock, so no other restore of ours is running here.
    Best effort: one that cannot be dropped stays for the next restore. Without the lock,
    ``kinds=("old",)``: a database renamed away is never used again, whoever runs."""
    prefix = swap_prefix(database)
    pattern = re.compile(re.escape(prefix) + f"({'|'.join(kinds)})" + r"_[0-9a-f]{8}")
    found = pg.server.value(
        _LEFTOVERS.format(prefix=literal(prefix), database=literal(database)),
        database=admin_db,
        what=f"looking for databases left by interrupted restores of '{pg.alias}'",
    )
    for name in found:
        if pattern.fullmatch(name) and name != database:
            with contextlib.suppress(OperationFailed):
                # Without FORCE: a session that appeared meanwhile keeps it.
                pg.server.query(
                    f"DROP DATABASE IF EXISTS {ident(name)}",
                    database=admin_db,
                    what=f"dropping {name}",
                )
