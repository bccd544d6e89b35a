"""The ``postgres-template`` connector: PostgreSQL snapshots kept on the server itself, as a
copy made with ``CREATE DATABASE ... TEMPLATE``, restored by the PostgreSQL connector's swap.
Chosen by name only, never by ENGINE. How it works and its limits: docs/postgres.md."""

from __future__ import annotations

import contextlib
import gzip
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from snapctl.connectors._disk_room import KEEP_FREE
from snapctl.connectors.api import PreparedCopy, Sanitizer
from snapctl.connectors.postgres import prepared
from snapctl.connectors.postgres.connection import (
    Libpq,
    close_django_connection,
    connect,
    maintenance_database,
)
from snapctl.connectors.postgres.quoting import do_block, ident, literal, short_name
from snapctl.connectors.postgres.swap import drop_database_sql, replace_by_swap
from snapctl.connectors.postgres.table_data import qualified_tables
from snapctl.connectors.postgres.target import inspect_target
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed

FORMAT = "template"
DESCRIPTOR_VERSION = 1
_MAX_DESCRIPTOR = 1024 * 1024
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
# A session that has just ended (ours, a moment ago) may still be listed for a few ms.
_SESSIONS_GRACE = 1.0
_OTHER_SESSIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = {database} AND pid <> pg_backend_pid() AND backend_type <> 'autovacuum worker'
"""
# The server and, when {copy} exists there, the copy. {system} is the system identifier, or
# NULL where pg_control_system() is not granted to us.
_STATE = """
SELECT json_build_object(
  'system_identifier', {system},
  'address', host(inet_server_addr()),
  'port', current_setting('port'),
  'server_version_num', current_setting('server_version_num')::int,
  'server_version', current_setting('server_version'),
  'copy', (SELECT json_build_object('comment', shobj_description(d.oid, 'pg_database'),
                                    'owns', pg_has_role(d.datdba, 'USAGE'))
           FROM pg_database d WHERE d.datname = {copy}))
"""
_STRATEGIES = ("file_copy", "wal_log")
_SYSTEM_IDENTIFIER = "(SELECT system_identifier::text FROM pg_control_system())"


@dataclass(frozen=True)
class Descriptor:
    """What the artifact holds: where the copy is and what it is a copy of."""

    source_database: str
    copy_database: str
    token: str
    host: str | None
    port: str | None
    system_identifier: str | None
    raw: dict[str, Any]

    @property
    def server(self) -> str:
        return f"{self.host or 'local socket'}:{self.port or 'default port'}"

    @property
    def comment(self) -> str:
        return copy_comment(self.source_database, self.token)


def copy_name(database: str) -> str:
    """``<database>_snapctl_<8 hex>``, the database name cut to keep it within 63 bytes."""
    return f"{short_name(database, 40)}_snapctl_{secrets.token_hex(4)}"


def copy_comment(source: str, token: str) -> str:
    """The copy's database comment: says what it is to a human, carries the token for us."""
    return f"snapctl postgres-template snapshot of database {source}; token {token}"


def read_descriptor(src: Path) -> Descriptor:
    """The descriptor at ``src``, unpacked or as stored (zstd, gzip)."""
    try:
        with open(src, "rb") as handle:
            data = handle.read(_MAX_DESCRIPTOR)
        if data.startswith(_ZSTD_MAGIC):
            import zstandard

            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=_MAX_DESCRIPTOR)
        elif data.startswith(_GZIP_MAGIC):
            data = gzip.decompress(data)
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError("not a postgres-template descriptor")
        if int(raw.get("descriptor_version", 0)) > DESCRIPTOR_VERSION:
            raise ValueError(f"descriptor version {raw['descriptor_version']} is too new")
        server = raw["server"]
        return Descriptor(
            source_database=str(raw["source_database"]),
            copy_database=str(raw["copy_database"]),
            token=str(raw["token"]),
            host=_optional(server.get("host")),
            port=_optional(server.get("port")),
            system_identifier=_optional(server.get("system_identifier")),
            raw=raw,
        )
    except FileNotFoundError:
        raise
    except Exception as exc:  # JSON, keys, types, zstandard.ZstdError, gzip's BadGzipFile
        raise IntegrityError(
            f"{src.name}: not a readable postgres-template snapshot descriptor ({exc})"
        ) from exc


def _optional(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _server_state(pg: Libpq, copy: str, database: str | None = None) -> dict[str, Any]:
    """The server's identity and version, and the copy's comment and owner if it exists."""
    what = f"connecting to PostgreSQL for '{pg.alias}'"
    try:
        state: dict[str, Any] = pg.server.value(
            _STATE.format(system=_SYSTEM_IDENTIFIER, copy=literal(copy)),
            database=database,
            what=what,
        )
    except OperationFailed as exc:
        if "permission denied" not in str(exc):
            raise
        state = pg.server.value(
            _STATE.format(system="NULL", copy=literal(copy)), database=database, what=what
        )
    return state


def _locate_copy(pg: Libpq, descriptor: Descriptor, state: dict[str, Any]) -> dict[str, Any]:
    """The copy's facts, or ``IntegrityError`` when this server does not hold it."""
    here = state.get("system_identifier")
    if descriptor.system_identifier and here and descriptor.system_identifier != here:
        raise IntegrityError(
            f"this postgres-template snapshot lives on another PostgreSQL server (system "
            f"{descriptor.system_identifier}, reached as {descriptor.server}) than '{pg.alias}' "
            f"(system {here}); it cannot leave its server, use --connector postgres to move "
            "data between servers"
        )
    copy: dict[str, Any] | None = state.get("copy")
    if copy is None:
        raise IntegrityError(
            f'the server-side copy "{descriptor.copy_database}" of this snapshot is gone from '
            f"the server of '{pg.alias}' (dropped, or the server was rebuilt); it cannot be "
            "restored, choose another snapshot"
        )
    if copy.get("comment") != descriptor.comment:
        raise IntegrityError(
            f"database \"{descriptor.copy_database}\" on the server of '{pg.alias}' is not "
            "the copy this snapshot made (its comment does not carry the snapshot's token); "
            "choose another snapshot"
        )
    return copy


def _require_privileges(pg: Libpq, info: dict[str, Any], action: str) -> None:
    """CREATEDB and ownership (or superuser), and nothing that a new OID would lose."""
    database, user = info["database"], info["user"]
    if not info["superuser"]:
        if not info["createdb"]:
            raise ConfigurationError(
                f'role "{user}" lacks the CREATEDB privilege, which the postgres-template '
                f"connector needs to {action} '{pg.alias}'; grant it (ALTER ROLE "
                f"{ident(user)} CREATEDB) or use --connector postgres"
            )
        if not info["owns"]:
            raise ConfigurationError(
                f'role "{user}" does not own database "{database}" of \'{pg.alias}\', and only '
                "its owner or a superuser may copy and replace it with CREATE DATABASE ... "
                "TEMPLATE; use --connector postgres"
            )
    if info["settings"] or info["slots"]:
        kept = "ALTER DATABASE ... SET settings" if info["settings"] else "replication slots"
        raise ConfigurationError(
            f"database \"{database}\" of '{pg.alias}' has {kept}, which a restore by "
            "postgres-template would lose (they belong to the database, not its contents); "
            "use --connector postgres"
        )


def _other_sessions(pg: Libpq, database: str, admin_db: str, grace: float = 0.0) -> int:
    """Sessions on ``database`` other than ours, after waiting up to ``grace`` s for them."""
    deadline = time.monotonic() + grace
    while True:
        count = int(
            pg.server.value(
                _OTHER_SESSIONS.format(database=literal(database)),
                database=admin_db,
                what=f"counting the sessions on '{pg.alias}'",
            )
        )
        if count == 0 or time.monotonic() >= deadline:
            return count
        time.sleep(0.1)


def _busy(pg: Libpq, database: str, count: int) -> OperationFailed:
    sessions = "1 other session is" if count == 1 else f"{count} other sessions are"
    return OperationFailed(
        f"cannot copy database \"{database}\" of '{pg.alias}' on the server: {sessions} "
        "connected to it, and CREATE DATABASE ... TEMPLATE needs it to itself; close them "
        "and retry, or use --connector postgres, which works while others are connected"
    )


def _require_postgresql(db_alias: str) -> None:
    from snapctl.django_env import database_settings

    engine = str(database_settings(db_alias).get("ENGINE", ""))
    if not any(fragment in engine for fragment in ("postgresql", "postgis")):
        raise ConfigurationError(
            f"'{db_alias}' is not a PostgreSQL database (ENGINE '{engine}'); the "
            "postgres-template connector serves PostgreSQL only"
        )


def _admin_database(pg: Libpq, database: str) -> str:
    admin_db = maintenance_database(pg, database)
    if admin_db is None:
        raise ConfigurationError(
            f"the postgres-template connector needs to connect to the 'postgres' or "
            f"'template1' database beside \"{database}\" of '{pg.alias}', and can reach neither"
        )
    return admin_db


def _drop(pg: Libpq, name: str, server_version_num: int, database: str | None) -> None:
    pg.server.query(
        drop_database_sql(name, server_version_num),
        database=database,
        what=f"dropping the server-side copy {name} of '{pg.alias}'",
    )


def _sanitize_copy(pg: Libpq, db_alias: str, copy: str, sanitizer: Sanitizer) -> None:
    """Rewrite the new copy by the rules, then refresh its statistics (pg_statistic keeps
    sampled values of each column) and VACUUM FULL it, pg_statistic included (our role is a
    superuser): the copy is the server's files, where old row versions stay until the tables
    are rewritten."""
    sanitizer.sanitize_database({"NAME": copy})
    what = f"vacuuming the sanitized copy of '{db_alias}'"
    # VACUUM FULL keeps the old versions any running snapshot may still see: first wait for
    # every transaction older than the rewrite to end.
    ((rewritten,),) = pg.server.query("SELECT pg_current_xact_id()::text", database=copy, what=what)
    _wait_for_older_snapshots(pg, copy, int(rewritten), what)
    pg.server.query("ANALYZE", "VACUUM FULL", database=copy, what=what)
    pg.server.close()  # nobody stays connected to the copy


# Sessions (ours aside) and prepared transactions whose snapshot or transaction is older than
# {xid}: old row versions must stay for them, whatever VACUUM FULL is asked.
_OLDER_SNAPSHOTS = """
SELECT (SELECT count(*) FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND pid NOT IN ({ours})
          AND (age(backend_xmin) >= age({xid}::text::xid)
               OR age(backend_xid) >= age({xid}::text::xid)))
     + (SELECT count(*) FROM pg_prepared_xacts
        WHERE age(transaction) >= age({xid}::text::xid))
     + (SELECT count(*) FROM pg_replication_slots
        WHERE age(xmin) >= age({xid}::text::xid) OR age(catalog_xmin) >= age({xid}::text::xid))
"""


def _wait_for_older_snapshots(pg: Libpq, copy: str, xid: int, what: str) -> None:
    """Wait, up to the lock timeout, until no transaction older than ``xid`` runs on the
    server; then fail rather than leave old values in the copy."""
    from snapctl import other_sessions

    timeout = other_sessions.policy().lock_timeout
    deadline = time.monotonic() + timeout
    xid32 = xid % 2**32  # pg_current_xact_id() is 64 bits; age() takes the 32-bit xid
    while True:
        ours = ", ".join(str(pid) for pid in sorted(pg.server.pids)) or "0"
        older = int(
            pg.server.value(_OLDER_SNAPSHOTS.format(ours=ours, xid=xid32), database=copy, what=what)
        )
        if not older:
            return
        if time.monotonic() >= deadline:
            raise OperationFailed(
                f"{what}: {older} transaction(s) older than the rewrite still run on the "
                f"server after {timeout:g} s, and old row versions must stay for them; "
                "retry when they end (or set SNAPSHOTS['LOCK_TIMEOUT'] longer)"
            )
        time.sleep(0.1)


class PostgresTemplateConnector:
    """Snapshots as server-side copies (CREATE DATABASE ... TEMPLATE); restore by rename swap."""

    name = "postgres-template"
    needs_app_registry = False  # reads settings.DATABASES only
    engines: tuple[str, ...] = ()  # never chosen by ENGINE: pick it by name
    binaries: tuple[str, ...] = ()  # the server does all of it; snapctl only asks
    extension = "json"
    exclude_data: tuple[str, ...] = ()  # truncated in the snapshot's copy

    def __init__(self, strategy: str = "file_copy", keep_free: float = KEEP_FREE) -> None:
        """``strategy``: how the server copies (PostgreSQL 15+); ``keep_free``: the share of
        the server's disk a prepared copy must leave free."""
        self.keep_free = keep_free
        if strategy.lower() not in _STRATEGIES:
            raise ConfigurationError(
                f"postgres-template strategy {strategy!r} is neither 'file_copy' nor 'wal_log'"
            )
        self.strategy = strategy.lower()

    def _strategy(self, server_version_num: int) -> str | None:
        """The copy strategy, for servers that have the choice (PostgreSQL 15+)."""
        return self.strategy if server_version_num >= 150000 else None

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Copy the database on its server and write the copy's descriptor to ``dest``."""
        return self._dump(db_alias, dest, None)

    def dump_sanitized(self, db_alias: str, dest: Path, sanitizer: Sanitizer) -> dict[str, Any]:
        """As ``dump()``, the copy sanitized before it is closed and marked: the copy *is*
        the snapshot, so no other scratch database is needed (see ``_sanitize_copy``)."""
        return self._dump(db_alias, dest, sanitizer)

    def _dump(self, db_alias: str, dest: Path, sanitizer: Sanitizer | None) -> dict[str, Any]:
        _require_postgresql(db_alias)
        with connect(db_alias, programs=False) as pg:
            info = inspect_target(pg, set())
            database = info["database"]
            _require_privileges(pg, info, "snapshot")
            if sanitizer is not None and not info["superuser"]:
                # The copy is the server's files: pg_statistic's sampled values of the live
                # columns come along, and only a superuser may vacuum their old versions away.
                raise ConfigurationError(
                    f"a sanitized postgres-template snapshot of '{db_alias}' needs a superuser "
                    "role (the copy's pg_statistic holds sampled values that only a superuser "
                    "can rewrite); use --connector postgres, whose dump carries no statistics"
                )
            close_django_connection(db_alias)
            admin_db = _admin_database(pg, database)
            copy = copy_name(database)
            token = secrets.token_hex(16)
            comment = copy_comment(database, token)
            state = _server_state(pg, copy, admin_db)
            if state["copy"] is not None:  # 32 random bits collided: never touch it
                raise OperationFailed(f"database {copy} already exists; retry the dump")
            others = _other_sessions(pg, database, admin_db, grace=_SESSIONS_GRACE)
            if others:
                raise _busy(pg, database, others)
            version = state["server_version_num"]
            what = f"copy of '{db_alias}' on the server"
            try:
                strategy = self._strategy(version)
                pg.server.query(
                    f"CREATE DATABASE {ident(copy)} TEMPLATE {ident(database)}"
                    + (f" STRATEGY {strategy}" if strategy else ""),
                    database=admin_db,
                    what=what,
                )
            except OperationFailed as exc:
                others = _other_sessions(pg, database, admin_db)
                if others:
                    raise _busy(pg, database, others) from exc
                raise
            try:
                self._empty_tables(pg, copy)
                if sanitizer is not None:
                    _sanitize_copy(pg, db_alias, copy, sanitizer)
                (size,) = pg.server.query(
                    # Nobody may connect: nothing can change it, or block the next restore.
                    f"ALTER DATABASE {ident(copy)} WITH ALLOW_CONNECTIONS false",
                    f"REVOKE ALL ON DATABASE {ident(copy)} FROM PUBLIC",
                    f"COMMENT ON DATABASE {ident(copy)} IS {literal(comment)}",
                    f"SELECT pg_database_size({literal(copy)})",
                    database=admin_db,
                    what=what,
                )[0]
                created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                descriptor = {
                    "format": FORMAT,
                    "descriptor_version": DESCRIPTOR_VERSION,
                    "server": {
                        "host": pg.env.get("PGHOST"),
                        "port": pg.env.get("PGPORT") or state["port"],
                        "address": state["address"],
                        "system_identifier": state["system_identifier"],
                    },
                    "source_database": database,
                    "copy_database": copy,
                    "token": token,
                    "owner": info["user"],
                    "server_version": state["server_version"],
                    "server_version_num": version,
                    "size": int(size),
                    "created": created.replace("+00:00", "Z"),
                }
                dest.write_text(json.dumps(descriptor, indent=2) + "\n", encoding="utf-8")
            except BaseException:
                with contextlib.suppress(OperationFailed):
                    _drop(pg, copy, version, admin_db)
                raise
        # server_size: what snapctl shows beside the artifact's few bytes in list and show.
        return {**descriptor, "server_size": int(size)}

    def _empty_tables(self, pg: Libpq, copy: str) -> None:
        """TRUNCATE the tables of ``exclude_data`` in the snapshot's copy, never the live
        database: their files are replaced by empty ones, so no page of the copy keeps the
        rows; their sequences keep their values (no RESTART IDENTITY)."""
        if not self.exclude_data:
            return
        try:
            tables = qualified_tables(pg, self.exclude_data, copy)
            what = f"emptying {', '.join(self.exclude_data)} in the copy of '{pg.alias}'"
            pg.server.query(f"TRUNCATE TABLE {', '.join(tables)}", database=copy, what=what)
            pg.server.query(_forget_statistics_sql(tables), database=copy, what=what)
        finally:
            # Nobody may stay connected to the copy: it is the template of every restore,
            # and dropped if this failed.
            pg.server.close()

    def restore(self, db_alias: str, src: Path) -> None:
        """Replace the database with a new copy of the snapshot's copy, swapped in by renames."""
        descriptor = read_descriptor(src)
        with connect(db_alias, programs=False) as pg:
            info, admin_db = self._check_restore(pg, db_alias, descriptor)
            replace_by_swap(
                pg,
                info,
                admin_db,
                template=descriptor.copy_database,
                strategy=self._strategy(info["server_version_num"]),
            )

    def prepare_copy(self, db_alias: str, src: Path, mark: str) -> PreparedCopy:
        """A side database copied from the snapshot's copy, ready to be renamed in."""
        descriptor = read_descriptor(src)
        with connect(db_alias, programs=False) as pg:
            info, _ = self._check_restore(pg, db_alias, descriptor)
        return prepared.prepare(
            db_alias,
            mark,
            self.keep_free,
            None,
            template=descriptor.copy_database,
            strategy=self._strategy(info["server_version_num"]),
            expected_size=int(descriptor.raw.get("size") or 0),
        )

    def swap_in_copy(self, db_alias: str, copy: PreparedCopy) -> PreparedCopy:
        """Rename the prepared copy in; the previous database is returned, to drop later."""
        close_django_connection(db_alias)
        return prepared.swap_in(db_alias, copy)

    def drop_copy(self, db_alias: str, copy: PreparedCopy) -> None:
        """Drop a prepared copy or a retired database of this database, if ours."""
        prepared.drop(db_alias, copy)

    def _check_restore(
        self, pg: Libpq, db_alias: str, descriptor: Descriptor
    ) -> tuple[dict[str, Any], str]:
        """The live database and a maintenance database, once the snapshot's copy is found
        here, is of this database, and may be copied by our role."""
        info = inspect_target(pg, set())
        state = _server_state(pg, descriptor.copy_database)
        copy = _locate_copy(pg, descriptor, state)
        if info["database"] != descriptor.source_database:
            raise IntegrityError(
                f'this snapshot is a copy of database "{descriptor.source_database}", but '
                f"'{db_alias}' is database \"{info['database']}\"; restore it into "
                f'"{descriptor.source_database}"'
            )
        _require_privileges(pg, info, "restore")
        if not (info["superuser"] or copy["owns"]):
            raise ConfigurationError(
                f'role "{info["user"]}" does not own the snapshot\'s copy '
                f'"{descriptor.copy_database}", and only its owner or a superuser may copy '
                f"it; restore '{db_alias}' as role \"{descriptor.raw.get('owner')}\""
            )
        close_django_connection(db_alias)
        return info, _admin_database(pg, info["database"])

    def check(self, db_alias: str, src: Path) -> None:
        """``IntegrityError`` (one line) unless the snapshot's copy is on this server."""
        descriptor = read_descriptor(src)
        with connect(db_alias, programs=False) as pg:
            _locate_copy(pg, descriptor, _server_state(pg, descriptor.copy_database))

    def forget(self, db_alias: str, src: Path) -> None:
        """Drop the snapshot's copy; one already gone (or not ours) is left alone."""
        descriptor = read_descriptor(src)
        with connect(db_alias, programs=False) as pg:
            admin_db = maintenance_database(pg, descriptor.copy_database)
            state = _server_state(pg, descriptor.copy_database, admin_db)
            try:
                _locate_copy(pg, descriptor, state)
            except IntegrityError:
                return  # not on this server, gone already, or someone else's database
            _drop(pg, descriptor.copy_database, state["server_version_num"], admin_db)


def _forget_statistics_sql(tables: list[str]) -> str:
    """Drop the emptied tables' statistics from the copy: ANALYZE of an empty table keeps
    the old ones, whose sampled values (most common values, histograms) are rows left out.
    Only a superuser may; for anyone else they stay in the copy, which never leaves the
    server (README, "Leaving data out")."""
    oids = ", ".join(f"{literal(table)}::regclass" for table in tables)
    return do_block(
        f"""
        BEGIN
            IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                DELETE FROM pg_statistic WHERE starelid IN ({oids});
                DELETE FROM pg_statistic_ext_data WHERE stxoid IN
                    (SELECT oid FROM pg_statistic_ext WHERE stxrelid IN ({oids}));
            END IF;
        END
        """
    )
