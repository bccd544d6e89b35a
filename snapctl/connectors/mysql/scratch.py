"""Scratch copies for sanitized dumps: ``<live>_snapctl_<8 hex>s`` beside the live database
(the user's ``ALL`` on `` `<live>\\_snapctl\\_%` `` covers it), made with its character set
and filled by ``mysqldump | mysql`` streaming, nothing written to disk on this machine. The
live database is only read (one ``--single-transaction`` dump, as a plain dump). The copy is
dropped when the dump ends, fails or is interrupted; one a killed dump left (nobody using it)
is dropped by the next sanitized dump of the database. Recovery of killed restores never
matches these names (names.side_kind), nor these its."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator, Sequence

from snapctl import notices
from snapctl.connectors import _process
from snapctl.connectors.mysql.names import MAX_NAME, SCRATCH_INFIX
from snapctl.connectors.mysql.quoting import as_text, quote_name, quote_text
from snapctl.connectors.mysql.session import Client, _load_args
from snapctl.connectors.mysql.swap import live_defaults, scratch_schemas
from snapctl.errors import ConfigurationError, OperationFailed

SUFFIX = "s"


def scratch_name(live: str) -> str:
    return f"{live}{SCRATCH_INFIX}{secrets.token_hex(4)}{SUFFIX}"


def _is_scratch(live: str, name: str) -> bool:
    return re.fullmatch(re.escape(live + SCRATCH_INFIX) + r"[0-9a-f]{8}" + SUFFIX, name) is not None


# A scratch copy with a table made this recently may be another dump's, between sessions.
_YOUNG = "INTERVAL 1 HOUR"


def _drop_leftovers(client: Client, live: str) -> None:
    """Drop the scratch copies killed dumps left: those nobody is using (best effort) and
    none of whose tables is young: without the PROCESS privilege the session list shows only
    this user's sessions, and a dump at work on its copy may be between two of them."""
    in_use = {
        as_text(row[0])
        for row in client.query(
            "SELECT DISTINCT DB FROM information_schema.PROCESSLIST WHERE DB IS NOT NULL",
            f"looking for sessions beside '{live}'",
        )
    }
    prefix = live + SCRATCH_INFIX
    in_use |= {
        as_text(row[0])
        for row in client.query(
            "SELECT TABLE_SCHEMA FROM information_schema.TABLES "
            f"WHERE LEFT(TABLE_SCHEMA, {len(prefix)}) = {quote_text(prefix)} "
            f"GROUP BY TABLE_SCHEMA HAVING MAX(CREATE_TIME) > NOW() - {_YOUNG}",
            f"looking for scratch copies in use beside '{live}'",
        )
    }
    for name in sorted(scratch_schemas(client, live)):
        if _is_scratch(live, name) and name not in in_use:
            with contextlib.suppress(OperationFailed):
                client.execute(
                    [f"DROP DATABASE IF EXISTS {quote_name(name)}"],
                    f"dropping '{name}', a scratch copy a killed dump left",
                )


@contextlib.contextmanager
def scratch_copy(client: Client, dump_flags: Sequence[str]) -> Iterator[str]:
    """A filled copy of the live database beside it, named; dropped on the way out."""
    live = client.database
    name = scratch_name(live)
    if len(name) > MAX_NAME:
        raise ConfigurationError(
            f"database name '{live}' is too long for a scratch copy beside it (at most "
            f"{MAX_NAME - len(name) + len(live)} characters)"
        )
    exists = client.query(
        f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {quote_text(live)}",
        f"connecting to '{client.alias}'",
    )[0][0]
    if not exists:
        raise ConfigurationError(
            f"database '{live}' of '{client.alias}' does not exist; there is nothing to dump"
        )
    _drop_leftovers(client, live)
    defaults = live_defaults(client, live)
    options = f" CHARACTER SET {defaults[0]} COLLATE {defaults[1]}" if defaults else ""
    what = f"making a scratch copy of '{client.alias}' to sanitize"
    client.execute(
        [f"CREATE DATABASE {quote_name(name)}{options}"],
        f"{what} (it needs ALL on `{live}_snapctl_%`)",
    )
    try:
        extra = f"--defaults-extra-file={client.defaults}"
        _process.pipe(
            [client.dumper.path, extra, *dump_flags, "--", live],
            [client.client_path, extra, *_load_args(name, client.session_setup)],
            what=what,
            secrets=[client.password],
        )
        yield name
    finally:
        try:
            client.execute([f"DROP DATABASE IF EXISTS {quote_name(name)}"], f"dropping '{name}'")
        except OperationFailed as exc:  # it holds real values: never left unsaid
            notices.notice(
                f"the scratch copy {name} could not be dropped ({exc}); the next sanitized "
                f"dump drops it, or run: DROP DATABASE `{name}`"
            )
