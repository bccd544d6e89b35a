"""snapctl's own queries on a PostgreSQL server, through the driver Django uses (psycopg 3,
else psycopg2): a millisecond each on a connection made once per database per command, where
each run of ``psql`` costs 10-20 ms. The database being dumped or restored is never held open
between statements. Why, and how the password is kept: docs/postgres.md."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from typing import Any, Protocol

from snapctl.connectors import _process
from snapctl.errors import ConfigurationError, OperationFailed


class _Cursor(Protocol):
    description: Any

    def execute(self, query: str) -> object: ...
    def fetchall(self) -> Sequence[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class _Connection(Protocol):
    """What snapctl uses of a psycopg or psycopg2 connection."""

    def cursor(self) -> _Cursor: ...
    def close(self) -> None: ...


def _driver() -> Any:
    """psycopg 3, else psycopg2, imported now: only PostgreSQL commands pay for it."""
    for name in ("psycopg", "psycopg2"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise ConfigurationError(
        "the PostgreSQL connectors need psycopg: pip install 'django-snapctl[postgres]'"
    )


def driver_failure(what: str, exc: BaseException, secrets: Sequence[str]) -> OperationFailed:
    """One line for a driver error: the server's message, the password masked."""
    detail = " ".join(_process.mask(str(exc), secrets).split())
    return OperationFailed(f"{what} failed: {detail or type(exc).__name__}")


class Sessions:
    """The driver's connections for one alias during one command."""

    def __init__(self, keywords: dict[str, str], password: str) -> None:
        self._keywords = keywords
        self._password = password
        self._kept: dict[str, _Connection] = {}
        self._module: Any = None
        self._pids: set[int] = set()

    @property
    def pids(self) -> frozenset[int]:
        """The server processes of every connection this command made, open or closed."""
        return frozenset(self._pids)

    @property
    def target(self) -> str | None:
        """The database of the alias (None when a libpq service names it)."""
        return self._keywords.get("dbname")

    def _connect(self, database: str | None, what: str) -> _Connection:
        if self._module is None:
            self._module = _driver()
        keywords = dict(self._keywords)
        if database is not None:
            keywords["dbname"] = database
        if self._password:
            keywords["password"] = self._password
        try:
            connection: Any = self._module.connect(**keywords)
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        except self._module.Error as exc:
            raise driver_failure(what, exc, [self._password]) from None
        with contextlib.suppress(AttributeError):  # psycopg 3 and psycopg2 2.8+ say it
            self._pids.add(int(connection.info.backend_pid))
        return connection  # type: ignore[no-any-return]

    def query(
        self, *statements: str, database: str | None = None, what: str
    ) -> list[tuple[Any, ...]]:
        """Run ``statements`` one by one (each its own transaction), stopping at the first
        that fails; return the rows of the last. JSON comes back parsed, integers as int."""
        keep = database is not None and database != self.target
        if keep and database in self._kept:
            connection = self._kept[database]
        else:
            connection = self._connect(database if keep else None, what)
        rows: list[tuple[Any, ...]] = []
        try:
            cursor = connection.cursor()
            try:
                for statement in statements:
                    cursor.execute(statement)
                    rows = list(cursor.fetchall()) if cursor.description is not None else []
            finally:
                cursor.close()
        except self._module.Error as exc:
            keep = False  # the connection may be lost: the next statement connects anew
            raise driver_failure(what, exc, [self._password]) from None
        finally:
            if keep:
                self._kept[str(database)] = connection
            else:
                self._kept.pop(str(database), None)
                with contextlib.suppress(Exception):
                    connection.close()
        return rows

    def value(self, sql: str, *, database: str | None = None, what: str) -> Any:
        """The first column of the one row ``sql`` returns."""
        rows = self.query(sql, database=database, what=what)
        return rows[0][0] if rows else None

    def close(self) -> None:
        kept, self._kept = self._kept, {}
        for connection in kept.values():
            with contextlib.suppress(Exception):  # already gone: nothing to release
                connection.close()
