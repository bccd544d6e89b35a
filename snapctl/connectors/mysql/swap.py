"""The swap restore: the snapshot loaded into a scratch database, then its tables exchanged
with the live ones by one atomic RENAME, by one client session that finishes by itself if
snapctl is killed; a failed swap is undone. See docs/mysql.md."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snapctl import other_sessions
from snapctl.connectors.mysql.blocking_sessions import LOCK_WAIT_TIMEOUT, LockTimeout, OtherSessions
from snapctl.connectors.mysql.dump_splitter import split_dump
from snapctl.connectors.mysql.objects import Objects, drop_programs, list_objects, programs_script
from snapctl.connectors.mysql.quoting import as_text, quote_name, quote_text
from snapctl.connectors.mysql.session import Client
from snapctl.errors import ConfigurationError, OperationFailed

SCRATCH_INFIX = "_snapctl_"
# Smaller scripts load whole, in one session: splitting them and starting a session per part
# costs more than the parallel load saves (two more client programs, 10-20 ms).
_SPLIT_FROM = 4 * 1024 * 1024
_KEPT = "snapctl_kept_"  # marks scratch databases kept after a failed undo
_MAX_NAME = 64


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


@dataclass
class Swap:
    """One restore's names and saved state, so that a failure can be undone.

    ``scratch`` receives the snapshot and holds the marker; ``aside`` receives the previous
    tables.
    """

    client: Client
    live: str
    workdir: Path
    jobs: int = 1
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    keep: bool = False  # set when ``aside`` holds the previous tables after a failed undo
    lock_timeout: float = other_sessions.DEFAULT_LOCK_TIMEOUT  # seconds, for others' locks
    leave: bool = False  # set when the marker must stay, for the next restore to finish an undo

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

    def check_names(self) -> None:
        if len(self.aside) > _MAX_NAME:
            longest = _MAX_NAME - len(self.aside) + len(self.live)
            raise ConfigurationError(
                f"database name '{self.live}' is too long for snapctl's scratch databases "
                f"beside it (at most {longest} characters)"
            )

    def create(self) -> None:
        """The scratch databases get the live one's defaults, which routines are created
        with. A missing live database is created, so a snapshot restores onto a new server."""
        rows = self.client.query(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
            f"information_schema.SCHEMATA WHERE SCHEMA_NAME = {quote_text(self.live)}",
            f"connecting to database '{self.live}'",
        )
        charset, collation = (as_text(value) for value in rows[0]) if rows else ("", "")
        options = f" CHARACTER SET {charset} COLLATE {collation}" if rows else ""
        statements = [] if rows else [f"CREATE DATABASE {quote_name(self.live)}"]
        statements += [f"CREATE DATABASE {quote_name(db)}{options}" for db in self.scratches]
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
        client = self.client
        try:
            self._load(src)
        except OperationFailed as exc:
            raise OperationFailed(f"{exc}; database '{self.live}' is unchanged") from exc
        found = list_objects(client, [self.live, self.scratch])
        old, new = found[self.live], found[self.scratch]
        new_programs = programs_script(client, self.scratch, new, self.workdir / "new.sql")
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

    def _load(self, src: Path) -> None:
        """Load the snapshot into the scratch database: whole in one session (a small one, or
        ``jobs=1``), or split into segments (tables, then their rows by ``jobs`` sessions at
        once, then the rest)."""
        what = f"loading the snapshot into '{self.scratch}'"
        parts = self.workdir / "segments"
        parts.mkdir()
        try:
            try:
                split = self.jobs > 1 and src.stat().st_size >= _SPLIT_FROM
                segments = split_dump(src, parts) if split else None
            except OSError:  # no room for the segments, say: the whole script needs none
                segments = None
            if segments is None:
                self.client.load(src, self.scratch, what)
                return
            self.client.load(segments.schema, self.scratch, f"{what} (tables)")
            rows = [(f"{what} (rows of {rows.label})", rows.path) for rows in segments.data]
            self.client.load_parallel(rows, self.scratch, self.jobs)
            self.client.load(segments.post, self.scratch, f"{what} (views and programs)")
        finally:
            shutil.rmtree(parts, ignore_errors=True)  # as large as the dump: free it now

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
           marker says which tables the live database holds.
        4. The snapshot's views, triggers, routines and events.
        5. The second scratch database (the previous tables), then the first one.
        """
        scratch, aside = quote_name(self.scratch), quote_name(self.aside)
        pending, done = quote_name(self.pending), quote_name(self.done)
        statements = [
            f"CREATE TABLE {scratch}.{pending} (x INT PRIMARY KEY, old LONGBLOB, new LONGBLOB)"
            " ENGINE=InnoDB;",  # a primary key, for servers with sql_require_primary_key
            f"INSERT INTO {scratch}.{pending} VALUES "
            f"(1, {_blob(old_programs)}, {_blob(new_programs)});",
        ]
        statements += drop_programs(self.live, old) + drop_programs(self.scratch, new)
        clauses = move_tables(self.live, old.tables, self.aside, new.tables, self.scratch)
        clauses.append(f"{scratch}.{pending} TO {scratch}.{done}")
        statements.append("RENAME TABLE " + ", ".join(clauses) + ";")
        script = self.workdir / "swap.sql"
        with open(script, "wb") as out:
            out.write("\n".join(statements).encode() + b"\n")
            if new_programs is not None:
                out.write(new_programs.read_bytes())
                out.write(b"\n")
            out.write(f"DROP DATABASE {aside};\nDROP DATABASE {scratch};\n".encode())
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
            finished = self.aside not in schemas and (
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
                previous = found[self.aside].tables
                clauses = move_tables(self.live, now.tables, self.scratch, previous, self.aside)
                # The marker travels back too: it always says which tables are live.
                scratch = quote_name(self.scratch)
                clauses.append(
                    f"{scratch}.{quote_name(self.done)} TO {scratch}.{quote_name(self.pending)}"
                )
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
