"""SQLite, with the standard library's sqlite3 module only.

Dump: the online backup API copies every page inside one read transaction, so the snapshot is
consistent while other processes write (in WAL mode they are never blocked). The ``sql``
format writes a text script instead (the reference format), also from one read transaction.

Restore is atomic through SQLite's own mechanism: the snapshot (or, for a script, a temporary
database built from it) is copied onto the live database with the backup API, which writes the
destination in a single transaction. A restore that dies part-way is rolled back by SQLite's
journal, and other connections see either the old database or the new one. From a compressed
snapshot the copy follows the unpacking (see ``restore_while_unpacking``), so the two overlap.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from snapctl import notices, other_sessions
from snapctl.connectors._file_holders import holders
from snapctl.connectors.api import Sanitizer
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed
from snapctl.unpacking import Unpacking

FORMATS = ("backup", "sql")
_HEADER = b"SQLite format 3\x00"
_SEQUENCE_STATEMENTS = ('DELETE FROM "sqlite_sequence"', 'INSERT INTO "sqlite_sequence"')
_BUSY_TIMEOUT_SECONDS = 30.0
# How soon the backup tries again a step that found the live database locked.
_LOCK_RETRY_SECONDS = 0.1
_LOCKED_STATUSES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: sqlite3 names them from 3.11 on
_COPY_CHUNK = 1024 * 1024
# Pages the backup API copies per step when it follows an unpacking (16 MiB of 4 KiB pages):
# few enough steps to cost nothing, small enough to keep close behind the unpacking.
_FOLLOW_STEP_PAGES = 4096


def database_path(db_alias: str) -> Path:
    from snapctl.django_env import database_settings

    name = str(database_settings(db_alias).get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file::memory:"):
        raise ConfigurationError(
            f"database '{db_alias}' is an in-memory SQLite database; there is nothing to snapshot"
        )
    return Path(name).expanduser().resolve()


class _Locked(OperationFailed):
    """Another connection holds the database locked."""


def _connect(
    path: Path, mode: str, *, immutable: bool = False, timeout: float = _BUSY_TIMEOUT_SECONDS
) -> sqlite3.Connection:
    uri = f"{path.as_uri()}?mode={mode}" + ("&immutable=1" if immutable else "")
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.DatabaseError as exc:
        if mode in ("rw", "ro") and not path.exists():
            raise ConfigurationError(f"SQLite database {path} does not exist") from exc
        failed = _Locked if "locked" in str(exc) else OperationFailed
        raise failed(f"cannot open SQLite database {path}: {exc}") from exc
    return connection


def _script_statements(connection: sqlite3.Connection) -> Iterator[str]:
    """The database as SQL, read in one transaction.

    The sqlite_sequence statements move to the end: older Pythons emit them wherever the table
    sorts, which can be before the tables that create it.
    """
    sequence: list[str] = []
    connection.execute("BEGIN")
    try:
        for statement in connection.iterdump():
            if statement.startswith(_SEQUENCE_STATEMENTS):
                sequence.append(statement if statement.endswith(";") else statement + ";")
            elif statement == "COMMIT;":
                user_version = connection.execute("PRAGMA user_version").fetchone()[0]
                yield from sequence
                yield f"PRAGMA user_version={int(user_version)};"
                yield statement
            else:
                yield statement
    finally:
        connection.execute("COMMIT")


def _read_scripts(path: Path, chunk_bytes: int = 1024 * 1024) -> Iterator[str]:
    """The SQL script in pieces of whole statements, about a megabyte each, each its own
    transaction, so it is never read whole and executes in few calls (1 MiB pieces: measured
    46 MB peak RSS against 126 MB with 4 MiB ones, at the same speed).

    The script's own outer BEGIN/COMMIT lines are dropped: each piece brings its own
    (executescript() would commit an open transaction between pieces anyway).
    """
    pending: list[str] = []
    size = 0
    with open(path, encoding="utf-8", newline="") as script:
        for number, line in enumerate(script):
            if number == 0 and line.strip() == "BEGIN TRANSACTION;":
                continue
            pending.append(line)
            size += len(line)
            if size >= chunk_bytes and line.rstrip().endswith(";"):
                text = "".join(pending)
                if sqlite3.complete_statement(text):
                    yield f"BEGIN;\n{text}\nCOMMIT;"
                    pending, size = [], 0
    if pending and pending[-1].strip() == "COMMIT;":
        pending.pop()
    leftover = "".join(pending)
    if leftover.strip():
        if not sqlite3.complete_statement(leftover):
            raise IntegrityError(f"SQL script {path.name} ends in an incomplete statement")
        yield f"BEGIN;\n{leftover}\nCOMMIT;"


def _copy_database(source: sqlite3.Connection, path: Path, dest: Path) -> None:
    """Write the database file to ``dest`` front to back, as one consistent state.

    A rollback-journal database is copied byte for byte under a read lock: while this
    connection holds its SHARED lock no connection can write the file (writing takes an
    EXCLUSIVE lock), and taking it rolls back a crashed writer's hot journal first. In WAL
    mode writers append to the -wal file instead, so that needs the backup API (into a
    scratch file beside ``dest`` when ``dest`` is a pipe).
    """
    source.execute("BEGIN")
    try:
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the SHARED lock
        # Asked under the lock, which a change of journal mode or page size would need.
        wal = str(source.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        if not wal and _copy_locked_file(source, path, dest):
            return  # committed
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            source.execute("ROLLBACK")
        raise
    source.execute("COMMIT")
    _backup_into(source, dest)


def _copy_locked_file(source: sqlite3.Connection, path: Path, dest: Path) -> bool:
    """Copy the file while ``source`` holds its SHARED lock, then end its transaction; False,
    with nothing written, if the file's header does not say what SQLite says.

    Our descriptor is closed only after the transaction: closing any descriptor of a file
    drops every POSIX lock this process holds on it, SQLite's SHARED lock included.
    """
    page_size = int(source.execute("PRAGMA page_size").fetchone()[0])
    page_count = int(source.execute("PRAGMA page_count").fetchone()[0])
    length = page_size * page_count
    fd = os.open(path, os.O_RDONLY)
    try:
        if not _header_agrees(os.pread(fd, 100, 0), page_size, page_count):
            return False
        if os.fstat(fd).st_size < length:
            return False
        with open(dest, "wb") as out:
            _copy_range(fd, out, length)
        source.execute("COMMIT")
        return True
    finally:
        os.close(fd)


def _header_pages(header: bytes) -> tuple[int, int | None]:
    """A database header's page size (bytes 16-17, 1 meaning 65536) and page count (bytes
    28-31), the count None where it is not valid (its change counter at 24-27 differs from
    92-95)."""
    size = int.from_bytes(header[16:18], "big")
    counted = header[24:28] == header[92:96]
    return (65536 if size == 1 else size), (
        int.from_bytes(header[28:32], "big") if counted else None
    )


def _header_agrees(header: bytes, page_size: int, page_count: int) -> bool:
    """Whether a database header is in rollback-journal mode (bytes 18-19 are 1, 1; WAL has
    2, 2) with this page size and, where the header's count is valid, this page count."""
    if len(header) < 100 or header[18:20] != b"\x01\x01":
        return False
    size, count = _header_pages(header)
    return size == page_size and count in (None, page_count)


def _copy_range(fd: int, out: BinaryIO, length: int) -> None:
    offset = 0
    while offset < length:
        chunk = os.pread(fd, min(_COPY_CHUNK, length - offset), offset)
        if not chunk:
            raise OperationFailed("the database file shrank while it was copied")
        out.write(chunk)
        offset += len(chunk)


def _backup_into(source: sqlite3.Connection, dest: Path) -> None:
    """The backup API's copy (one step: one consistent read transaction) into ``dest``, or
    into a scratch file then streamed to ``dest`` if that is a pipe (the API seeks)."""
    to_pipe = dest.exists() and stat.S_ISFIFO(dest.stat().st_mode)
    target_path = dest.with_name(dest.name + ".backup") if to_pipe else dest
    target = sqlite3.connect(target_path)
    try:
        if to_pipe:  # scratch: the artifact made from it is what gets flushed to disk
            target.execute("PRAGMA journal_mode=OFF")
            target.execute("PRAGMA synchronous=OFF")
        source.backup(target)
    finally:
        target.close()
    if to_pipe:
        try:
            _stream_file(target_path, dest)
        finally:
            target_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _scratch_copy(
    source: sqlite3.Connection, beside: Path, prefix: str
) -> Iterator[tuple[sqlite3.Connection, Path]]:
    """A private copy of ``source`` (the backup API: one consistent read) in a new file
    beside ``beside``, inside the snapshot being written (a killed dump's copy goes with
    it), for a dump to change before it is dumped: the live database is only read. Removed,
    with any journal, when the block ends."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".sqlite3", dir=beside.parent)
    os.close(fd)  # 0600 from mkstemp; SQLite takes an empty file for a new database
    path = Path(name)
    scratch = None
    try:
        scratch = sqlite3.connect(path, isolation_level=None)
        # Scratch: the artifact made from it is what gets flushed to disk (VACUUM: 1.6 s
        # with syncs, 0.8 s without, on a 227 MB database).
        scratch.execute("PRAGMA synchronous=OFF")
        source.backup(scratch)
        # The copy's rollback journal in memory: no file beside it ever holds the rows.
        scratch.execute("PRAGMA journal_mode=DELETE")
        scratch.execute("PRAGMA journal_mode=MEMORY")
        # Deleted content zeroed in place, whatever the build's default (Debian's is on):
        # with VACUUM after, twice sure that no page keeps a row.
        scratch.execute("PRAGMA secure_delete=ON")
        yield scratch, path
    finally:
        if scratch is not None:
            scratch.close()
        for leftover in (path, *(Path(name + end) for end in ("-journal", "-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def _without_rows(
    source: sqlite3.Connection, dest: Path, tables: tuple[str, ...], *, vacuum: bool
) -> Iterator[tuple[sqlite3.Connection, Path]]:
    """A scratch copy of ``source`` with the rows of ``tables`` deleted; vacuumed when its
    pages are the artifact, since freed pages would still hold those rows. sqlite_sequence
    keeps its counters."""
    with _scratch_copy(source, dest, ".snapctl-rows-") as (scratch, path):
        scratch.execute("BEGIN")
        for table in tables:
            scratch.execute(f"DELETE FROM {_quoted(table)}")
        scratch.execute("COMMIT")
        if vacuum:
            scratch.execute("VACUUM")
        yield scratch, path


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stream_file(path: Path, dest: Path) -> None:
    """Copy a finished scratch database to ``dest`` (a file or a pipe) front to back."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with open(dest, "wb") as out:
            _copy_range(fd, out, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _declared_database_file(src: Path) -> bool:
    """Whether the artifact is a database file rather than a script, as its name says: the
    manifest's file name, ``<alias>.sqlite3`` or ``<alias>.sql``, decides, never the content."""
    return src.suffix != ".sql"


def _scratch_only(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
    """SQLite authorizer for a snapshot's script: nothing outside the one database."""
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _SCRIPT_DENIED_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


# Settings a script could use to write elsewhere or to lift its bounds.
_SCRIPT_DENIED_PRAGMAS = {"temp_store_directory", "data_store_directory", "max_page_count"}


def _open_target(db_alias: str) -> sqlite3.Connection:
    """The live database a restore writes, created if it does not exist yet."""
    path = database_path(db_alias)
    path.parent.mkdir(parents=True, exist_ok=True)
    waiting = _BoundedWait(db_alias, path)
    while True:
        # A short busy timeout: a lock returns at once to _BoundedWait (here, and as the
        # backup's callback), which says what it waits for and bounds the wait, rather than
        # SQLite blocking silently.
        try:
            return _connect(path, "rwc", timeout=_LOCK_RETRY_SECONDS)
        except _Locked:
            waiting(_LOCKED_STATUSES[0], 0, 0)
            time.sleep(_LOCK_RETRY_SECONDS)


@contextlib.contextmanager
def _unchanged_on_failure(db_alias: str) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OperationFailed) as exc:
        raise OperationFailed(
            f"restore of SQLite database '{db_alias}' failed, database unchanged: {exc}"
        ) from exc


class _BoundedWait:
    """The backup's progress callback, called after every step: a step that found the live
    database locked by another connection (its transaction still open) is retried by
    sqlite3, forever if let. While it retries, new readers of a database in rollback mode
    are locked out too. So the wait is said once, naming the processes that have the file
    open, and ends after the lock timeout with the database unchanged."""

    def __init__(self, db_alias: str, path: Path) -> None:
        self.db_alias = db_alias
        self.path = path
        self.timeout = other_sessions.policy().lock_timeout
        self.since: float | None = None

    def __call__(self, status: int, remaining: int, total: int) -> bool:
        """Whether this step was refused for a lock (and will be retried)."""
        if status not in _LOCKED_STATUSES:
            self.since = None
            return False
        now = time.monotonic()
        if self.since is None:
            self.since = now
            notices.notice(
                f"waiting up to {self.timeout:g} s for another connection's transaction on "
                f"{self.path} to end{self._who()}"
            )
        elif now - self.since >= self.timeout:
            raise OperationFailed(
                f"another connection kept {self.path} locked for {self.timeout:g} s"
                f"{self._who()}: end its transaction, or pass a longer --lock-timeout"
            )
        return True

    def _who(self) -> str:
        found = holders(self.path)
        return f" (open in {', '.join(found)})" if found else ""


def _database_layout(unpacking: Unpacking) -> tuple[int, int] | None:
    """(page size, page count) from the header of a database file being unpacked, or None
    for an SQL script or a header without a valid page count."""
    if not unpacking.wait_for(100):
        return None
    with open(unpacking.path, "rb") as handle:
        header = handle.read(100)
    if not header.startswith(_HEADER):
        return None
    size, count = _header_pages(header)
    return (size, count) if count else None


def _vacuum(path: Path) -> None:
    """Rebuild the scratch copy: pages its rewritten rows freed would otherwise still hold
    the old values, and a dump copies every page. Statistics an ANALYZE left (with STAT4,
    sampled index keys: real emails) are sampled again, from the fakes."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        stats = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'sqlite_stat%'"
        ).fetchone()[0]
        if stats:
            connection.execute("ANALYZE")
        connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise OperationFailed(f"vacuuming the sanitized copy {path.name} failed: {exc}") from exc
    finally:
        connection.close()


class SQLiteConnector:
    """Back up and restore SQLite databases using the stdlib sqlite3 module."""

    name = "sqlite"
    needs_app_registry = False  # reads settings.DATABASES only
    engines = ("sqlite3",)
    binaries: tuple[str, ...] = ()
    dump_to_pipe = True  # both formats are written front to back
    exclude_data: tuple[str, ...] = ()  # tables dumped empty, from a scratch copy

    def __init__(self, format: str = "backup") -> None:
        if format not in FORMATS:
            raise ConfigurationError(
                f"unknown SQLite format '{format}'; choose one of: {', '.join(FORMATS)}"
            )
        self.format = format

    @property
    def extension(self) -> str:
        return "sqlite3" if self.format == "backup" else "sql"

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump the SQLite database for db_alias to dest (a database file or SQL script)."""
        source = _connect(database_path(db_alias), "rw")
        try:
            page_size = source.execute("PRAGMA page_size").fetchone()[0]
            journal_mode = source.execute("PRAGMA journal_mode").fetchone()[0]
            if self.exclude_data:
                self._dump_without_rows(source, dest)
            elif self.format == "backup":
                _copy_database(source, database_path(db_alias), dest)
            else:
                with open(dest, "w", encoding="utf-8", newline="\n") as script:
                    for statement in _script_statements(source):
                        script.write(statement)
                        script.write("\n")
        except sqlite3.Error as exc:
            raise OperationFailed(f"dump of SQLite database '{db_alias}' failed: {exc}") from exc
        finally:
            source.close()
        return {
            "format": self.format,
            "server_version": sqlite3.sqlite_version,
            "page_size": page_size,
            "journal_mode": journal_mode,
        }

    def _dump_without_rows(self, source: sqlite3.Connection, dest: Path) -> None:
        """The dump of a scratch copy without the rows of ``exclude_data``."""
        backup = self.format == "backup"
        with _without_rows(source, dest, tuple(self.exclude_data), vacuum=backup) as (copy, path):
            if backup:
                copy.close()
                _stream_file(path, dest)
                return
            with open(dest, "w", encoding="utf-8", newline="\n") as script:
                for statement in _script_statements(copy):
                    script.write(statement)
                    script.write("\n")

    def dump_sanitized(self, db_alias: str, dest: Path, sanitizer: Sanitizer) -> dict[str, Any]:
        """Dump a sanitized copy: the backup API copies the database (one read transaction,
        as a dump) into a private scratch file beside ``dest`` (inside the snapshot being
        written, which a killed dump's successor removes), the rules rewrite the copy,
        VACUUM rebuilds it so that no freed page keeps an old value, and the copy is dumped
        as the live database would be. The live database is only read."""
        from snapctl.sanitizing.scratch_alias import temporary_alias

        source = _connect(database_path(db_alias), "rw")
        try:
            with _scratch_copy(source, dest, ".sanitize-") as (copy, scratch):
                source.close()  # read once, by the copy
                copy.close()  # the rules open it through Django
                sanitizer.sanitize_database({"NAME": str(scratch)})
                _vacuum(scratch)
                with temporary_alias(db_alias, {"NAME": str(scratch)}) as alias:
                    return self.dump(alias, dest)
        except sqlite3.Error as exc:
            raise OperationFailed(f"sanitizing SQLite database '{db_alias}' failed: {exc}") from exc
        finally:
            source.close()

    def restore(self, db_alias: str, src: Path) -> None:
        """Restore the SQLite database for db_alias from src, read as the format its name
        (the manifest's file name) says: a script ``*.sql``, else a database file."""
        is_database_file = _declared_database_file(src)
        with tempfile.TemporaryDirectory(prefix="snapctl-") as scratch:
            target = _open_target(db_alias)
            try:
                with _unchanged_on_failure(db_alias):
                    page_size = int(target.execute("PRAGMA page_size").fetchone()[0])
                    source = self._open_source(src, is_database_file, page_size, Path(scratch))
                    waiting = _BoundedWait(db_alias, database_path(db_alias))
                    try:
                        # One write transaction on the live database.
                        source.backup(target, progress=waiting, sleep=_LOCK_RETRY_SECONDS)
                    finally:
                        source.close()
            finally:
                target.close()

    def restore_while_unpacking(self, db_alias: str, unpacking: Unpacking) -> None:
        """Restore from a verified artifact while it is unpacked: the backup API copies the
        pages in order, so each step waits only for the pages it copies. The live database
        is written in one transaction, which commits only once the whole artifact is
        unpacked and its compressed stream checked; anything failing before leaves it as it
        was. An SQL script, or a file whose header does not give its length, is unpacked
        whole first."""
        with _unchanged_on_failure(db_alias):
            layout = (
                _database_layout(unpacking) if _declared_database_file(unpacking.path) else None
            )
            if layout is not None:
                self._follow(db_alias, unpacking, *layout)
                return
            unpacking.wait_done()
        self.restore(db_alias, unpacking.path)

    def _follow(self, db_alias: str, unpacking: Unpacking, page_size: int, pages: int) -> None:
        discard = False  # decided once the live database's page size is known

        locked = _BoundedWait(db_alias, database_path(db_alias))

        def wait(status: int, remaining: int, total: int) -> None:
            """Until the next step's pages are unpacked; before the last step, until all
            is unpacked and checked. Pages copied are dropped from the scratch file."""
            if locked(status, remaining, total):
                return  # the step is retried as it was
            copied = total - remaining
            if discard and copied > _FOLLOW_STEP_PAGES:
                # Never re-read: each step begins at page 1 (kept), then reads its own.
                unpacking.discard(_FOLLOW_STEP_PAGES * page_size, copied * page_size)
            upto = copied + _FOLLOW_STEP_PAGES
            if upto < pages:
                if unpacking.wait_for(upto * page_size):
                    return
            elif unpacking.wait_done() >= pages * page_size:
                return
            raise IntegrityError(
                f"snapshot file {unpacking.path.name} is shorter than its header says; "
                f"database '{db_alias}' unchanged"
            )

        target = _open_target(db_alias)
        try:
            # SQLite takes a file shorter than its header says for a damaged one.
            unpacking.reserve(pages * page_size)
            # A backup into larger pages reads some source pages again at its end.
            discard = int(target.execute("PRAGMA page_size").fetchone()[0]) == page_size
            # Opened without a first query: reading the schema would read pages that may
            # not be unpacked yet. The backup reads page 1, then the pages of each step.
            source = sqlite3.connect(
                f"{unpacking.path.as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None
            )
            try:
                wait(0, pages, pages)  # the first step's pages
                source.backup(
                    target, pages=_FOLLOW_STEP_PAGES, progress=wait, sleep=_LOCK_RETRY_SECONDS
                )
            finally:
                source.close()
        finally:
            target.close()

    def _open_source(
        self, src: Path, is_database_file: bool, page_size: int, scratch_dir: Path
    ) -> sqlite3.Connection:
        """The snapshot as a database: the file itself, or a scratch database built from the
        script. Its checksum was verified before this, so no integrity scan is repeated."""
        with open(src, "rb") as handle:
            has_header = handle.read(len(_HEADER)) == _HEADER
        if has_header != is_database_file:
            declared = "a database file" if is_database_file else "an SQL script"
            raise IntegrityError(
                f"snapshot file {src.name} is not {declared}, as its manifest says; "
                "restore another snapshot"
            )
        if is_database_file:
            # immutable: no -wal or -journal beside it is read (none is covered by the
            # checksum), and nothing is created there.
            return _connect(src, "ro", immutable=True)
        # Build the script into a scratch database first, so the live one is replaced in one
        # step. A matching page size lets the copy go into a WAL database too. The scratch
        # database needs no durability: nothing depends on it if the machine stops. It lives
        # in a private directory, never beside the snapshot, and the script may touch nothing
        # but it: no ATTACH (nor VACUUM INTO), no extension.
        source = _connect(scratch_dir / "restore.sqlite3", "rwc")
        source.execute(f"PRAGMA page_size={page_size}")
        source.execute("PRAGMA journal_mode=OFF")
        source.execute("PRAGMA synchronous=OFF")
        # A few bytes of script can build gigabytes (a recursive CTE of zeroblobs): the
        # scratch database may not outgrow the disk's free room.
        free_pages = shutil.disk_usage(scratch_dir).free // page_size
        source.execute(f"PRAGMA max_page_count={max(1, free_pages)}")
        source.set_authorizer(_scratch_only)
        for piece in _read_scripts(src):
            source.executescript(piece)
        return source
