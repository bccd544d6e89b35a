"""The user's triggers kept from firing while the rules rewrite a scratch copy.

The rules rewrite columns with plain UPDATEs. A trigger on the table would fire for each
row: an audit trigger (django-pghistory, django-pgtrigger, a hand-written history table)
copies every original value into another table of the copy, which the dump then carries,
and others act outside the database (NOTIFY). So while a table is rewritten, its triggers
are switched off (PostgreSQL) or dropped and made again unchanged (SQLite, MySQL, which
cannot switch one off); the copy is dumped with them all in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_SQLITE_TRIGGERS = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s"
_MYSQL_TRIGGERS = (
    "SELECT trigger_name FROM information_schema.triggers "
    "WHERE event_object_schema = DATABASE() AND event_object_table = %s"
)


@contextlib.contextmanager
def suspended(connection: Any, table: str) -> Iterator[None]:
    """No user trigger of ``table`` fires inside the block; all are as before after it. On
    failure the scratch copy is dropped, so nothing needs putting back then."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {quote(table)} DISABLE TRIGGER USER")
            yield
            cursor.execute(f"ALTER TABLE {quote(table)} ENABLE TRIGGER USER")
            return
        saved = _definitions(cursor, connection.vendor, quote, table)
        for name, _ in saved:
            cursor.execute(f"DROP TRIGGER {quote(name)}")
        yield
        for _, definition in saved:
            cursor.execute(definition)  # no parameters: the text is run as it is


def _definitions(cursor: Any, vendor: str, quote: Any, table: str) -> list[tuple[str, str]]:
    """(name, CREATE TRIGGER statement) of each trigger of ``table``."""
    if vendor == "sqlite":
        cursor.execute(_SQLITE_TRIGGERS, [table])
        return [(str(name), str(sql)) for name, sql in cursor.fetchall()]
    if vendor == "mysql":
        cursor.execute(_MYSQL_TRIGGERS, [table])
        names = [str(row[0]) for row in cursor.fetchall()]
        definitions = []
        for name in names:
            cursor.execute(f"SHOW CREATE TRIGGER {quote(name)}")
            definitions.append((name, str(cursor.fetchone()[2])))  # SQL Original Statement
        return definitions
    return []
