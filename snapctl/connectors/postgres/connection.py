"""One alias's PostgreSQL server during one command: the libpq settings that the programs get
as environment variables and snapctl's own sessions as keywords, the password kept off
command lines, and the first query, which explains a database refusing connections."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapctl.connectors import _process
from snapctl.connectors.postgres.quoting import ident
from snapctl.connectors.postgres.session import Sessions
from snapctl.errors import ConfigurationError, OperationFailed

_MAINTENANCE_DATABASES = ("postgres", "template1")

# libpq connection keywords that have an environment variable. Django passes OPTIONS to the
# driver as libpq keywords, so the tools see exactly the connection Django makes.
_LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "service": "PGSERVICE",
}
# A host that does not answer should fail the command, not hang it.
_DEFAULT_CONNECT_TIMEOUT = "10"


def _passfile_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def libpq_keywords(settings: dict[str, Any]) -> dict[str, str]:
    """The libpq connection keywords for one DATABASES entry, without its password."""
    options = dict(settings.get("OPTIONS") or {})
    if options.get("sslpassword"):
        raise ConfigurationError(
            "OPTIONS 'sslpassword' cannot be given to pg_dump without a command line; "
            "use an unencrypted client key, readable only by you"
        )
    if not settings.get("NAME") and not options.get("service"):
        raise ConfigurationError("DATABASES NAME is empty; name the database to snapshot")
    keywords: dict[str, Any] = {
        "dbname": settings.get("NAME"),
        "user": settings.get("USER"),
        "host": settings.get("HOST"),
        "port": settings.get("PORT"),
    }
    keywords.update(options)
    found = {
        key: str(value)
        for key, value in keywords.items()
        if key in _LIBPQ_ENV and value not in (None, "")
    }
    for key, default in (
        ("connect_timeout", _DEFAULT_CONNECT_TIMEOUT),
        ("application_name", "snapctl"),
    ):
        found.setdefault(key, os.environ.get(_LIBPQ_ENV[key], default))
    return found


def libpq_environment(settings: dict[str, Any]) -> dict[str, str]:
    """The libpq environment for one DATABASES entry, without its password."""
    return {_LIBPQ_ENV[key]: value for key, value in libpq_keywords(settings).items()}


@dataclass(frozen=True)
class Libpq:
    """One alias's server during one command: the programs' environment (with PGPASSFILE),
    the driver's sessions for snapctl's own queries (see session.py), and the secrets to
    mask."""

    alias: str
    env: dict[str, str]
    secrets: tuple[str, ...]
    server: Sessions

    def run(self, argv: Sequence[str], what: str, stdout: Path | None = None) -> str:
        return _process.run(argv, what=what, env=self.env, stdout=stdout, secrets=self.secrets)

    def run_into(self, argv: Sequence[str], dest: Path, what: str, head: int) -> bytes:
        return _process.run_into(
            argv, dest, what=what, env=self.env, secrets=self.secrets, head=head
        )


@contextlib.contextmanager
def connect(db_alias: str, *, programs: bool = True) -> Iterator[Libpq]:
    """The server of ``db_alias``. With ``programs``, its password is in a private passfile
    meanwhile, for pg_dump, pg_restore and psql; the driver has it in memory."""
    from snapctl.django_env import database_settings

    settings = database_settings(db_alias)
    env = libpq_environment(settings)
    password = str(settings.get("PASSWORD") or "")
    server = Sessions(libpq_keywords(settings), password)
    with contextlib.ExitStack() as stack:
        stack.callback(server.close)
        if programs and password and "\n" in password:
            env = {**env, "PGPASSWORD": password}  # a passfile cannot hold it
        elif programs and password:
            passfile = stack.enter_context(
                _process.private_file(_passfile_line(password), suffix=".pgpass")
            )
            # An empty PGPASSWORD counts as unset, so an inherited one cannot override ours.
            env = {**env, "PGPASSFILE": str(passfile), "PGPASSWORD": ""}
        yield Libpq(db_alias, env, (password,) if password else (), server)


def first_query(pg: Libpq, sql: str) -> Any:
    """The value of ``sql`` on the database of ``pg``, as the first connection of a command:
    a database left refusing connections (by an admin, or by an earlier snapctl killed
    during a restore) is said so, with the fix; snapctl cannot tell which, so it never undoes
    it."""
    try:
        return pg.server.value(sql, what=f"connecting to PostgreSQL for '{pg.alias}'")
    except OperationFailed as exc:
        if "is not currently accepting connections" not in str(exc):
            raise
        name = pg.env.get("PGDATABASE")
        raise OperationFailed(
            f"{exc} (unless an admin meant this: an earlier snapctl killed during a restore "
            f"could leave it so; its owner can run ALTER DATABASE "
            f"{ident(name) if name else '<name>'} WITH ALLOW_CONNECTIONS true)"
        ) from exc


def maintenance_database(pg: Libpq, database: str) -> str | None:
    """A database to stand in while ours is renamed: ``postgres``, else ``template1``."""
    for candidate in _MAINTENANCE_DATABASES:
        if candidate == database:
            continue
        try:
            pg.server.query("SELECT 1", database=candidate, what=f"connecting to {candidate}")
        except OperationFailed:
            continue
        return candidate
    return None


def close_django_connection(db_alias: str) -> None:
    from snapctl.django_env import close_connection

    close_connection(db_alias)
