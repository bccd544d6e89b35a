"""One command's sessions with a MySQL/MariaDB server: snapctl's own queries through one
mysqlclient connection (imported only when connecting), the dump and the loads of scripts
through the client programs, both reading one private option file. Each restore session
bounds its waits for metadata locks (``lock_wait_timeout``). See docs/mysql.md."""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from snapctl.connectors import _process
from snapctl.connectors.mysql.option_file import option_file_text, ssl_mode
from snapctl.errors import ConfigurationError, OperationFailed

_PACKAGE_HINT = "the MariaDB or MySQL client (e.g. apt install mariadb-client)"


CONNECT_TIMEOUT = 10  # seconds
IDLE_CHECK = 1.0  # seconds unused after which the connection is pinged before a query


class _Cursor(Protocol):
    def execute(self, query: str) -> object: ...
    def fetchall(self) -> Sequence[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class _Connection(Protocol):
    """What snapctl uses of a mysqlclient connection (mysqlclient ships no type hints)."""

    def cursor(self) -> _Cursor: ...
    def ping(self) -> object: ...
    def close(self) -> None: ...


def _driver() -> Any:
    """The mysqlclient module, imported now: it costs milliseconds that only MySQL pays."""
    try:
        module = importlib.import_module("MySQLdb")
    except ImportError as exc:
        raise ConfigurationError(
            "the MySQL connector needs mysqlclient: pip install 'django-snapctl[mysql]'"
        ) from exc
    if module.__name__ != "MySQLdb":  # PyMySQL's install_as_MySQLdb(): another file parser
        raise ConfigurationError(
            "the MySQL connector needs mysqlclient, not PyMySQL installed as MySQLdb: "
            "pip install mysqlclient"
        )
    return module


class ServerError(OperationFailed):
    """A driver error, with the server's error code (0 if none) for the callers that expect
    one (a missing privilege, a lock wait timeout) and act on it."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def driver_failure(what: str, exc: BaseException, secrets: Sequence[str]) -> ServerError:
    """One line for a driver error, shaped like a program's: ``ERROR <code>: <message>``."""
    args = exc.args
    code = args[0] if len(args) == 2 and isinstance(args[0], int) else 0
    if code:
        detail = f"ERROR {args[0]}: {args[1]}"
    else:
        detail = " ".join(str(arg) for arg in args if arg not in ("", 0))
    detail = " ".join(_process.mask(detail, secrets).split())  # one line
    return ServerError(f"{what} failed: {detail or 'the server connection was lost'}", code)


def lock_wait_seconds(lock_timeout: float) -> int:
    """The server's ``lock_wait_timeout`` for the policy's lock timeout: whole seconds,
    rounded down so that the application never queues behind snapctl longer than asked, and
    at least 1, MySQL's minimum (MariaDB's 0 would fail at once on any lock, even that of a
    query about to end)."""
    return max(1, int(lock_timeout))


@dataclass(frozen=True)
class Tool:
    """One client program and what its ``--version`` says."""

    path: str
    version: str

    @property
    def mariadb(self) -> bool:
        return "mariadb" in self.version.lower()

    @property
    def major(self) -> int:
        match = re.search(r"Distrib (\d+)", self.version) or re.search(r"Ver (\d+)", self.version)
        return int(match.group(1)) if match else 0


def _load_args(database: str, setup: str | None) -> list[str]:
    # --local-infile=0: a snapshot's script may not read this machine's files
    # (LOAD DATA LOCAL INFILE); --binary-mode already keeps it from running commands.
    args = [
        "--batch",
        "--binary-mode",
        "--local-infile=0",
        "--max-allowed-packet=1G",
        f"--database={database}",
    ]
    # Run on connecting, and again if the client reconnects: before the script's first line.
    return args + ([f"--init-command={setup}"] if setup else [])


class Client:
    """One command's view of an alias: a driver connection for snapctl's own queries, the
    dump program and the client program (each found on PATH once) for dumps and loads.

    ``lock_wait``: seconds each session waits at most for another's metadata lock (a
    restore's); None leaves the server's setting (a dump takes no such lock)."""

    def __init__(
        self, alias: str, defaults: Path, settings: dict[str, Any], lock_wait: int | None = None
    ) -> None:
        self.alias = alias
        self.lock_wait = lock_wait
        self.defaults = defaults
        self.database = str(settings.get("NAME") or "")
        self.host = str(settings.get("HOST") or "")  # "" or a path: a socket on this machine
        self.password = str(settings.get("PASSWORD") or "")
        self.ssl_mode = ssl_mode(settings)
        # Both found now, so that a missing one fails the command before it changes anything.
        self.dumper_path = _process.find_binary(
            "mariadb-dump", "mysqldump", package_hint=_PACKAGE_HINT
        )
        self.client_path = _process.find_binary("mariadb", "mysql", package_hint=_PACKAGE_HINT)
        self._connection: _Connection | None = None
        self._errors: type[Exception] = Exception  # mysqlclient's base class, once imported
        self._used = 0.0  # when the connection last answered

    @classmethod
    @contextlib.contextmanager
    def open(cls, alias: str, lock_wait: int | None = None) -> Iterator[Client]:
        from snapctl.django_env import database_settings

        settings = database_settings(alias)
        if not settings.get("NAME"):
            raise ConfigurationError(f"database '{alias}' has no NAME")
        with _process.private_file(option_file_text(settings), suffix=".cnf") as defaults:
            client = cls(alias, defaults, settings, lock_wait)
            try:
                yield client
            finally:
                client.close()

    @property
    def session_setup(self) -> str | None:
        """The statement each session runs first: the bound on its waits for metadata locks."""
        if self.lock_wait is None:
            return None
        return f"SET SESSION lock_wait_timeout = {self.lock_wait}"

    # --- snapctl's own queries, through the driver ---

    def _connect(self) -> _Connection:
        module = _driver()
        self._errors = module.Error
        options: dict[str, Any] = {
            "read_default_file": str(self.defaults),
            "read_default_group": "client",
            "connect_timeout": CONNECT_TIMEOUT,
            "charset": "utf8mb4",
            "autocommit": True,
            "multi_statements": False,  # one statement a call: an error cannot hide behind
        }
        if self.ssl_mode:
            options["ssl_mode"] = self.ssl_mode
        if self.session_setup:
            options["init_command"] = self.session_setup  # on every connection, new ones too
        try:
            connection: _Connection = module.connect(**options)
        except module.Error as exc:
            raise driver_failure(f"connecting to '{self.alias}'", exc, [self.password]) from None
        return connection

    def _connection_for_use(self) -> _Connection:
        connection = self._connection
        if connection is not None and time.monotonic() - self._used > IDLE_CHECK:
            try:
                connection.ping()
            except self._errors:  # closed by the server while a tool ran: it held no state
                self.close()
                connection = None
        if connection is None:
            connection = self._connection = self._connect()
        return connection

    def execute(self, statements: Sequence[str], what: str) -> list[tuple[Any, ...]]:
        """Run statements one after another in snapctl's session, stopping at the first that
        fails; return the last one's rows (strings, bytes for blobs, None for NULL)."""
        connection = self._connection_for_use()
        rows: list[tuple[Any, ...]] = []
        try:
            cursor = connection.cursor()
            try:
                for statement in statements:
                    cursor.execute(statement.strip().rstrip(";"))
                    rows = list(cursor.fetchall())
            finally:
                cursor.close()
        except self._errors as exc:
            raise driver_failure(what, exc, [self.password]) from None
        finally:
            self._used = time.monotonic()
        return rows

    def query(self, sql: str, what: str) -> list[tuple[Any, ...]]:
        """One statement's rows."""
        return self.execute([sql], what)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # already gone: nothing to release
                connection.close()

    # --- the programs ---

    @functools.cached_property
    def dumper(self) -> Tool:
        """The dump program and its version, asked once and only by a dump, whose flags
        depend on it (the restore's object dumps use flags every version takes)."""
        path = self.dumper_path
        # The option file first even here, so that every call has the same, checkable shape.
        argv = [path, f"--defaults-extra-file={self.defaults}", "--version"]
        text = _process.run(argv, what=f"{Path(path).name} --version").strip()
        # "mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for ..." -> after the name.
        return Tool(path, text.split(None, 1)[1] if " " in text else text)

    def run(
        self,
        program: str,
        args: Sequence[str],
        what: str,
        stdin: Path | None = None,
        stdout: Path | BinaryIO | None = None,
    ) -> str:
        # The option file must come first: the tools only honour it there.
        argv = [program, f"--defaults-extra-file={self.defaults}", *args]
        return _process.run(argv, what=what, stdin=stdin, stdout=stdout, secrets=[self.password])

    def load(self, script: Path, database: str, what: str) -> None:
        """Run a script (a dump's, or one holding a dump's parts) with the client program,
        which knows its ``DELIMITER`` lines and client commands."""
        self.run(self.client_path, _load_args(database, self.session_setup), what, stdin=script)

    def load_parallel(self, scripts: Sequence[tuple[str, Path]], database: str, jobs: int) -> None:
        """Load ``(what, script)`` pairs, each in its own session, ``jobs`` at a time."""
        args = _load_args(database, self.session_setup)
        argv = [self.client_path, f"--defaults-extra-file={self.defaults}", *args]
        _process.run_parallel(
            [_process.Job(argv, what, script) for what, script in scripts],
            limit=jobs,
            secrets=[self.password],
        )
