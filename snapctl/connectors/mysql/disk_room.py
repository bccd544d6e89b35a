"""Room on the database server's disk for a prepared copy: measured only where the server is
on this machine (its data directory is then a local path), else not checked. See
docs/mysql.md."""

from __future__ import annotations

import socket
from pathlib import Path

from snapctl.connectors import _disk_room as room
from snapctl.connectors.mysql.quoting import as_text, quote_text
from snapctl.connectors.mysql.session import Client

_LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")  # "": the client's default, the socket


def schema_size(client: Client, schema: str) -> int:
    """A schema's bytes on the server, as its tables' statistics say (data and indexes)."""
    rows = client.query(
        "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = {quote_text(schema)}",
        f"measuring database '{schema}'",
    )
    return int(rows[0][0]) if rows else 0


def local_data_directory(client: Client) -> Path | None:
    """The server's data directory if the server runs on this machine: reached by the socket
    or a loopback address, with this machine's host name, and its data directory here."""
    if client.host not in _LOCAL_HOSTS and not client.host.startswith("/"):
        return None
    rows = client.query("SELECT @@datadir, @@hostname", "asking the server where its data is")
    datadir, hostname = (as_text(value) for value in rows[0])
    if hostname.lower() != socket.gethostname().lower():
        return None  # a container, or the option file's host: the path would be another's
    path = Path(datadir)
    try:
        return path if path.is_dir() else None
    except OSError:  # not ours to look into
        return None


def check_room(client: Client, live: str, src: Path, keep_free: float) -> None:
    """Refuse a copy of ``live`` from ``src`` that would leave less than ``keep_free`` of the
    server's disk free: it needs about the live database's size or the script's, the larger.
    A server elsewhere is not checked: its disk cannot be seen from here."""
    datadir = local_data_directory(client)
    if datadir is None:
        return
    needed = max(schema_size(client, live), src.stat().st_size)
    room.check_room(f"'{live}'", None, str(datadir), needed, keep_free)
