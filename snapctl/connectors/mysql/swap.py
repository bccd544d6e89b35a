"""The swap restore: the snapshot loaded into a scratch database (or prepared in a copy ahead of
time), then its tables exchanged with the live ones by one atomic RENAME, by one client
session that finishes by itself if snapctl is killed; a failed swap is undone. See
docs/mysql.md."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snapctl import other_sessions
from snapctl.connectors.mysql.blocking_sessions import LOCK_WAIT_TIMEOUT, LockTimeout, OtherSessions
from snapctl.connectors.mysql.loading import load_dump
from snapctl.connectors.mysql.names import MAX_NAME, SCRATCH_INFIX, copy_marker, retired_marker
from snapctl.connectors.mysql.objects import Objects, drop_programs, list_objects, programs_script
from snapctl.connectors.mysql.quoting import as_text, quote_name, quote_text
from snapctl.connectors.mysql.session import Client
from snapctl.errors import ConfigurationError, OperationFailed

_KEPT = "snapctl_kept_"  # marks scratch databases kept after a failed undo


def move_tables(
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


def live_defaults(client: Client, live: str) -> tuple[str, str] | None:
    """The database's default character set and collation; None if it does not exist."""
    rows = client.query(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
        f"information_schema.SCHEMATA WHERE SCHEMA_NAME = {quote_text(live)}",
        f"connecting to database '{live}'",
    )
    return (as_text(rows[0][0]), as_text(rows[0][1])) if rows else None


@dataclass
class Swap:
    """One restore's names and saved state, so that a failure can be undone.

    ``scratch`` receives the snapshot and holds the marker; ``aside`` receives the previous
    tables. With ``source``, a prepared copy, the snapshot's tables come from there instead:
    ``scratch`` holds only the marker, and ``aside`` is kept afterwards as the retired
    database, marked so, for a later drop (dropping gigabytes takes seconds).
    """

    client: Client
    live: str
    workdir: Path
    jobs: int = 1
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    keep: bool = False  # set when ``aside`` holds the previous tables after a failed undo
    lock_timeout: float = other_sessions.DEFAULT_LOCK_TIMEOUT  # seconds, for others' locks
    leave: bool = False  # set when the marker must stay, for the next restore to finish an undo
    source: str | None = None  # a prepared copy to swap in, instead of loading ``scratch``

    @property
    def scratch(self) -> str:
        return f"{self.live}{SCRATCH_INFIX}{self.token}"

    @property
    def aside(self) -> str:
        return f"{self.live}{SCRATCH_INFIX}{self.token}o"

    @property
    def pending(self) -> str:
        return f"snapctl_pending_{self.token}"

    @property
    def done(self) -> str:
        return f"snapctl_swapped_{self.token}"

    @property
    def incoming(self) -> str:
        """Where the snapshot's tables come from, and go back to if the swap is undone."""
        return self.scratch if self.source is None else self.source

    @property
    def retired(self) -> str:
        """The table marking ``aside`` as a retired database (a prepared copy's swap)."""
        return retired_marker(self.token)

    @property
    def dropped_last(self) -> str:
        """The database the swap's script drops before ``scratch``, which holds the marker:
        the previous tables, or the emptied prepared copy (the previous tables are kept)."""
        return self.aside if self.source is None else self.source

    def check_names(self) -> None:
        if len(self.aside) > MAX_NAME:
            longest = MAX_NAME - len(self.aside) + len(self.live)
            raise ConfigurationError(
                f"database name '{self.live}' is too long for snapctl's scratch databases "
                f"beside it (at most {longest} characters)"
            )

    def create(self) -> None:
        """The scratch databases get the live one's defaults, which routines are created
        with. A missing live database is created, so a snapshot restores onto a new server."""
        defaults = live_defaults(self.client, self.live)
        options = f" CHARACTER SET {defaults[0]} COLLATE {defaults[1]}" if defaults else ""
        statements = [] if defaults else [f"CREATE DATABASE {quote_name(self.live)}"]
        statements += [f"CREATE DATABASE {quote_name(db)}{options}" for db in self.scratches]
        if self.source is not None:  # a retired database from the start: see recovery.py
            statements.append(
                f"CREATE TABLE {quote_name(self.aside)}.{quote_name(self.retired)} "
                "(x INT PRIMARY KEY)"
            )
        self.client.execute(
            statements, f"creating scratch databases (it needs ALL on `{self.live}_snapctl_%`)"
        )

    @property
    def scratches(self) -> tuple[str, str]:
        return self.aside, self.scratch  # the scratch one, with the marker, last

    def drop(self) -> None:
        self.client.execute(
            [f"DROP DATABASE IF EXISTS {quote_name(db)}" for db in self.scratches],
            f"dropping scratch databases {' and '.join(self.scratches)} (drop them by hand)",
        )

    def run(self, src: Path) -> None:
        """Load the snapshot into ``scratch``, then swap its tables in."""
        client = self.client
        try:
            load_dump(client, src, self.scratch, self.workdir, self.jobs)
        except OperationFailed as exc:
            raise OperationFailed(f"{exc}; database '{self.live}' is unchanged") from exc
        new = list_objects(client, [self.scratch])[self.scratch]
        self.exchange(programs_script(client, self.scratch, new, self.workdir / "new.sql"))

    def exchange(self, new_programs: Path | None) -> None:
        """Swap the tables of ``incoming`` in, and recreate the snapshot's views, triggers,
        routines and events from ``new_programs``; a failure is undone (``_put_back``)."""
        client = self.client
        found = list_objects(client, [self.live, self.incoming])
        old, new = found[self.live], found[self.incoming]
        if self.source is not None:  # the copy's marker is no table of the snapshot
            new.tables = [table for table in new.tables if table != copy_marker(self.source)]
        old_programs = programs_script(client, self.live, old, self.workdir / "old.sql")
        script = self._swap_script(old, new, old_programs, new_programs)
        others = OtherSessions(client, self.live, self.lock_timeout)
        step, unchanged = f"restore of '{self.live}'", f"database '{self.live}' is unchanged"
        try:
            others.wait(step, unchanged)  # last, so that none can come between it and the swap
        except LockTimeout:
            raise
        except OperationFailed as exc:
            raise OperationFailed(f"{exc}; {unchanged}") from exc
        try:
            client.load(
                script,
                self.live,
                f"swapping the snapshot's tables into '{self.live}' and recreating views, "
                "triggers, routines and events there",
            )
        except (OperationFailed, KeyboardInterrupt) as exc:  # Ctrl-C must not leave it half-done
            failure: BaseException = exc
            if LOCK_WAIT_TIMEOUT.search(str(exc)):
                failure = others.timed_out(step)  # the same message as the wait's
            self._put_back(old, old_programs, failure)

    def _swap_script(
        self, old: Objects, new: Objects, old_programs: Path | None, new_programs: Path | None
    ) -> Path:
        """The whole swap, for one client session: whatever kills snapctl, an orphaned client
        finishes it, and a client killed too leaves a record that the next restore acts on.

        1. The marker table ``pending`` in the scratch database, holding the scripts that
           recreate the previous objects and the snapshot's, so either can be finished later.
        2. Drop what cannot move: triggers block a RENAME across schemas, and views cannot
           change schema at all; the scratch copies go too, as a view there could block a table.
        3. One atomic RENAME exchanging all tables and renaming the marker to ``done``: the
           marker says which tables the live database holds. A prepared copy's marker moves
           into the scratch database with it: the emptied copy no longer passes for one.
        4. The snapshot's views, triggers, routines and events.
        5. The second scratch database (the previous tables; for a prepared copy, the emptied
           copy instead, the previous tables being kept), then the first one.
        """
        scratch = quote_name(self.scratch)
        pending, done = quote_name(self.pending), quote_name(self.done)
        statements = [
            f"CREATE TABLE {scratch}.{pending} (x INT PRIMARY KEY, old LONGBLOB, new LONGBLOB)"
            " ENGINE=InnoDB;",  # a primary key, for servers with sql_require_primary_key
            f"INSERT INTO {scratch}.{pending} VALUES "
            f"(1, {_blob(old_programs)}, {_blob(new_programs)});",
        ]
        statements += drop_programs(self.live, old) + drop_programs(self.incoming, new)
        clauses = move_tables(self.live, old.tables, self.aside, new.tables, self.incoming)
        clauses.append(f"{scratch}.{pending} TO {scratch}.{done}")
        if self.source is not None:
            marker = quote_name(copy_marker(self.source))
            clauses.append(f"{quote_name(self.source)}.{marker} TO {scratch}.{marker}")
        statements.append("RENAME TABLE " + ", ".join(clauses) + ";")
        script = self.workdir / "swap.sql"
        with open(script, "wb") as out:
            out.write("\n".join(statements).encode() + b"\n")
            if new_programs is not None:
                out.write(new_programs.read_bytes())
                out.write(b"\n")
            last = quote_name(self.dropped_last)
            out.write(f"DROP DATABASE {last};\nDROP DATABASE {scratch};\n".encode())
        return script

    @property
    def kept(self) -> str:
        return f"{_KEPT}{self.token}"

    def _put_back(self, old: Objects, old_programs: Path | None, failure: BaseException) -> None:
        """Undo a failed swap: move the previous tables back, recreate their objects. A swap
        that failed before dropping anything (its first lock wait ran out, say) left nothing
        to undo, and nothing is done: recreating objects would wait for the same locks."""
        client = self.client
        reason = str(failure) or f"restore of '{self.live}' interrupted"
        swapped: bool | None = None  # unknown until the marker is looked for
        finished = untouched = False
        try:
            schemas = scratch_schemas(client, self.live)
            found = list_objects(client, [self.live, self.scratch, self.aside])
            # Only the script's last two statements drop them: then the snapshot is in place.
            finished = self.dropped_last not in schemas and (
                self.scratch not in schemas or self.done in found[self.scratch].tables
            )
            if finished:
                raise OperationFailed(
                    f"{reason}; database '{self.live}' was restored, but dropping the scratch "
                    f"database '{self.scratch}' failed (the next restore drops it)"
                ) from failure
            now = found[self.live]
            swapped = self.done in found[self.scratch].tables
            untouched = not swapped and now.names() == old.names()
            statements = [] if untouched else drop_programs(self.live, now)
            if swapped:
                previous = [t for t in found[self.aside].tables if t != self.retired]
                clauses = move_tables(self.live, now.tables, self.incoming, previous, self.aside)
                # The marker travels back too: it always says which tables are live.
                scratch = quote_name(self.scratch)
                clauses.append(
                    f"{scratch}.{quote_name(self.done)} TO {scratch}.{quote_name(self.pending)}"
                )
                if self.source is not None:  # and the copy's: it is whole again
                    marker = quote_name(copy_marker(self.source))
                    clauses.append(f"{scratch}.{marker} TO {quote_name(self.source)}.{marker}")
                statements.append("RENAME TABLE " + ", ".join(clauses) + ";")
            if statements:
                client.execute(statements, f"putting back '{self.live}'")
            if old_programs is not None and not untouched:
                client.load(old_programs, self.live, f"putting back the objects of '{self.live}'")
        except OperationFailed as undo:
            if finished:
                raise
            self.keep = swapped is not False
            # Not swapped: the marker in the scratch database holds the previous objects.
            self.leave = swapped is False
            if swapped is None:
                where = f"in '{self.live}' or, if they were swapped out, in '{self.aside}'"
            elif swapped:
                where = f"in '{self.aside}'"
            else:
                where = (
                    f"still in '{self.live}', and the next restore recreates its views, "
                    "triggers, routines and events"
                )
            if self.keep:  # so that the next restore leaves both scratch databases alone
                with contextlib.suppress(OperationFailed):
                    client.execute(
                        [
                            f"CREATE TABLE IF NOT EXISTS {quote_name(self.aside)}."
                            f"{quote_name(self.kept)} (x INT PRIMARY KEY)"
                        ],
                        f"marking '{self.aside}' as kept",
                    )
            raise OperationFailed(
                f"{reason}; putting the previous database back also failed ({undo}); its "
                f"tables are {where}"
            ) from failure
        state = "is unchanged" if untouched else "was put back as it was"
        raise OperationFailed(f"{reason}; database '{self.live}' {state}") from failure


def _blob(script: Path | None) -> str:
    return "NULL" if script is None else f"X'{script.read_bytes().hex()}'"


def scratch_schemas(client: Client, live: str) -> set[str]:
    """The live database and the databases named like its scratch databases, if they exist."""
    prefix = live + SCRATCH_INFIX
    rows = client.query(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "
        f"{quote_text(live)} OR LEFT(SCHEMA_NAME, {len(prefix)}) = {quote_text(prefix)}",
        f"listing the databases beside '{live}'",
    )
    return {as_text(row[0]) for row in rows}
