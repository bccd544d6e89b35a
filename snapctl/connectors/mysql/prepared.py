"""Prepared copies, for instant restores: a snapshot loaded ahead of time into a side
database ``<live>_snapctl_<t>p`` named after its mark, later swapped in by the restore's own
atomic swap, the previous tables kept in a retired database for a later drop. See
docs/mysql.md, "Prepared copies"."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from snapctl.connectors.api import PreparedCopy
from snapctl.connectors.mysql.disk_room import check_room, schema_size
from snapctl.connectors.mysql.loading import load_dump
from snapctl.connectors.mysql.names import (
    MAX_NAME,
    copy_marker,
    copy_name,
    mark_digest,
    side_kind,
)
from snapctl.connectors.mysql.objects import drop_programs, list_objects, programs_script
from snapctl.connectors.mysql.quoting import as_text, quote_name, quote_text
from snapctl.connectors.mysql.recovery import recover, retired_databases
from snapctl.connectors.mysql.session import Client
from snapctl.connectors.mysql.swap import Swap, live_defaults
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed

_READY = "ready"  # the marker's state once the copy is whole


def _drop(client: Client, names: list[str], what: str) -> None:
    client.execute([f"DROP DATABASE IF EXISTS {quote_name(name)}" for name in names], what)


def prepare(
    client: Client, src: Path, mark: str, workdir: Path, jobs: int, keep_free: float
) -> PreparedCopy:
    """Load ``src`` into a new copy named after ``mark``, beside the live database, which is
    not touched. The copy holds the snapshot's tables and a marker table: the mark's digest,
    the state, and the script recreating the snapshot's views, triggers, routines and events,
    which are dropped from the copy (an event must not fire there while it waits, and the
    swap recreates them in the live database anyway)."""
    live = client.database
    name = copy_name(live, mark)
    if len(name) > MAX_NAME:
        raise ConfigurationError(
            f"database name '{live}' is too long for a prepared copy beside it (at most "
            f"{MAX_NAME - len(name) + len(live)} characters)"
        )
    for retired in retired_databases(client, live):  # room first: they are not needed
        _drop(client, [retired], f"dropping '{retired}', retired by an earlier swap")
    check_room(client, live, src, keep_free)
    defaults = live_defaults(client, live)
    options = f" CHARACTER SET {defaults[0]} COLLATE {defaults[1]}" if defaults else ""
    # No IF NOT EXISTS: a database of that name that this call did not make is left alone.
    client.execute(
        [f"CREATE DATABASE {quote_name(name)}{options}"],
        f"creating the prepared copy '{name}' (it needs ALL on `{live}_snapctl_%`)",
    )
    try:
        return _fill(client, src, mark, name, workdir, jobs)
    except BaseException:
        with contextlib.suppress(OperationFailed):  # the first error matters
            _drop(client, [name], f"dropping the unfinished copy '{name}'")
        raise


def _fill(
    client: Client, src: Path, mark: str, name: str, workdir: Path, jobs: int
) -> PreparedCopy:
    copy, marker = quote_name(name), quote_name(copy_marker(name))
    client.execute(
        [
            # A primary key, for servers with sql_require_primary_key.
            f"CREATE TABLE {copy}.{marker} (x INT PRIMARY KEY, mark CHAR(64) NOT NULL, "
            "state VARCHAR(16) NOT NULL, programs LONGBLOB) ENGINE=InnoDB",
            f"INSERT INTO {copy}.{marker} VALUES (1, {quote_text(mark_digest(mark))}, "
            "'loading', NULL)",
        ],
        f"marking the prepared copy '{name}'",
    )
    load_dump(client, src, name, workdir, jobs)
    objects = list_objects(client, [name])[name]
    programs = programs_script(client, name, objects, workdir / "programs.sql")
    blob = "NULL" if programs is None else f"X'{programs.read_bytes().hex()}'"
    # Fresh statistics (a few sampled pages a table): the size below is then the copy's, and
    # the optimizer knows the tables as soon as they are live.
    tables = ", ".join(f"{copy}.{quote_name(table)}" for table in objects.tables)
    client.execute(
        [
            *drop_programs(name, objects),
            f"ANALYZE TABLE {tables}",
            f"UPDATE {copy}.{marker} SET state = '{_READY}', programs = {blob} WHERE x = 1",
        ],
        f"finishing the prepared copy '{name}'",
    )
    charset, collation = live_defaults(client, name) or ("", "")
    return PreparedCopy(
        name=name,
        mark=mark,
        size=schema_size(client, name),
        metadata={"charset": charset, "collation": collation},
    )


def _programs(client: Client, copy: PreparedCopy) -> bytes | None:
    """The copy's script of views, triggers, routines and events, once it is checked to be
    the one prepared with ``copy.mark``, whole; else IntegrityError."""
    live, name, marker = client.database, copy.name, copy_marker(copy.name)
    if name != copy_name(live, copy.mark):
        raise IntegrityError(
            f"'{name}' is not the copy prepared for database '{live}' with this mark; "
            f"'{live}' is unchanged"
        )
    rows = client.query(
        "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "
        f"{quote_text(name)}), (SELECT COUNT(*) FROM information_schema.TABLES WHERE "
        f"TABLE_SCHEMA = {quote_text(name)} AND TABLE_NAME = {quote_text(marker)})",
        f"looking for the prepared copy '{name}'",
    )
    exists, marked = (int(value) for value in rows[0])
    if not exists:
        raise IntegrityError(f"the prepared copy '{name}' is gone; '{live}' is unchanged")
    found = (
        client.query(
            f"SELECT mark, state, programs FROM {quote_name(name)}.{quote_name(marker)} "
            "WHERE x = 1",
            f"reading the mark of the prepared copy '{name}'",
        )
        if marked
        else []
    )
    if not found or as_text(found[0][0]) != mark_digest(copy.mark):
        raise IntegrityError(
            f"the prepared copy '{name}' does not carry the mark it was prepared with (its "
            f"preparation or a swap of it was cut short, or it was changed); '{live}' is "
            "unchanged"
        )
    if as_text(found[0][1]) != _READY:
        raise IntegrityError(
            f"the prepared copy '{name}' was never finished (its preparation was cut short); "
            f"'{live}' is unchanged"
        )
    programs = found[0][2]
    return None if programs is None else bytes(programs)


def _check_live(client: Client, copy: PreparedCopy) -> None:
    """The live database must still have the defaults the copy was made with (its routines
    are recreated with them); a missing one is created with them, as a restore would."""
    live = client.database
    made_with = (str(copy.metadata.get("charset")), str(copy.metadata.get("collation")))
    if not all(re.fullmatch(r"\w+", word) for word in made_with):  # words put into SQL
        raise IntegrityError(
            f"the record of the prepared copy '{copy.name}' has no character set and "
            f"collation; '{live}' is unchanged"
        )
    now = live_defaults(client, live)
    if now is None:
        client.execute(
            [f"CREATE DATABASE {quote_name(live)} CHARACTER SET {made_with[0]} "
             f"COLLATE {made_with[1]}"],
            f"creating database '{live}'",
        )  # fmt: skip
    elif now != made_with:
        raise ConfigurationError(
            f"database '{live}' now defaults to {now[0]}/{now[1]}, not {made_with[0]}/"
            f"{made_with[1]} as when its copy '{copy.name}' was prepared; '{live}' is "
            "unchanged: restore the snapshot without the copy"
        )


def swap_in(client: Client, copy: PreparedCopy, workdir: Path, lock_timeout: float) -> PreparedCopy:
    """Swap the copy's tables in place of the live ones (the restore's swap: one session,
    its marker, undone on failure) and return the retired database holding the previous
    tables, to drop later."""
    live = client.database
    swap = Swap(client, live, workdir, lock_timeout=lock_timeout, source=copy.name)
    swap.check_names()
    recover(client, live, lock_timeout, drop_retired=False)
    programs = _programs(client, copy)
    _check_live(client, copy)
    new_programs: Path | None = None
    if programs is not None:
        new_programs = workdir / "new.sql"
        new_programs.write_bytes(programs)
    swap.create()
    try:
        swap.exchange(new_programs)
    except BaseException:
        if not (swap.keep or swap.leave):
            with contextlib.suppress(OperationFailed):  # the first error matters
                swap.drop()
        raise
    size: int | None = None
    with contextlib.suppress(OperationFailed):  # the swap is done: a size is not worth failing
        size = schema_size(client, swap.aside)
    return PreparedCopy(name=swap.aside, size=size, metadata={"retired": True})


def drop(client: Client, copy: PreparedCopy) -> None:
    """Drop a prepared copy (by its name, or the one its mark names), or a retired database
    whose swap is over; anything else, or a database already gone, is left alone."""
    live = client.database
    if not (copy.name or copy.mark):
        return
    name = copy.name or copy_name(live, copy.mark)
    side = side_kind(live, name)
    if side is None or side[1] == "":
        return  # not a copy's nor a retired database's name: not ours to drop
    if side[1] == "o" and name not in retired_databases(client, live):
        return  # a swap's previous tables, the swap not over: recovery's to judge
    _drop(client, [name], f"dropping '{name}'")
