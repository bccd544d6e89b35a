"""Print a canonical JSON document of the entire content of a database.

Two databases hold the same data exactly when their digests are identical, so
tests can compare a database before a dump and after a restore. Every table the
backend reports is included (not only Django models), plus the sequence state.
"""

import datetime
import json
import uuid
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper


def canonical(value: Any) -> Any:
    """Convert a value returned by a database driver to a JSON-safe, canonical form."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return str(value)
    return value


def sort_key(row: list[Any]) -> list[tuple[int, Any]]:
    """Order rows naturally (ids numerically) while tolerating NULLs and mixed types."""
    key: list[tuple[int, Any]] = []
    for value in row:
        if value is None:
            key.append((0, 0))
        elif isinstance(value, (int, float)):
            key.append((1, value))
        elif isinstance(value, str):
            key.append((2, value))
        else:
            key.append((3, json.dumps(value, sort_keys=True)))
    return key


def table_content(connection: BaseDatabaseWrapper, table: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        columns = [column[0] for column in cursor.description]
        rows = [[canonical(value) for value in row] for row in cursor.fetchall()]
    # Sort in Python rather than with ORDER BY: some column types have no ordering
    # in SQL (e.g. PostgreSQL json) and MySQL's case/accent-insensitive collations
    # consider distinct strings equal, which would make the order unstable.
    rows.sort(key=sort_key)
    return {"columns": columns, "rows": rows}


def sequences(connection: BaseDatabaseWrapper) -> dict[str, Any]:
    """The state of the sequences / auto-increment counters, per backend."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences")
        elif connection.vendor == "sqlite":
            # Django's introspection hides sqlite_sequence, so read it explicitly.
            cursor.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
            if not cursor.fetchone():
                return {}
            cursor.execute("SELECT name, seq FROM sqlite_sequence")
        elif connection.vendor == "mysql":
            if not connection.mysql_is_mariadb:  # type: ignore[attr-defined]
                # MySQL 8 caches information_schema statistics for a day by default.
                cursor.execute("SET SESSION information_schema_stats_expiry = 0")
            cursor.execute(
                "SELECT table_name, auto_increment FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND auto_increment IS NOT NULL"
            )
        else:
            return {}
        return {name: canonical(value) for name, value in cursor.fetchall()}


class Command(BaseCommand):
    help = "Print a canonical JSON digest of every table of a database (for comparisons)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument("--summary", action="store_true", help="Only print {table: row count}.")

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        tables = sorted(connection.introspection.table_names())
        if options["summary"]:
            document: dict[str, Any] = {}
            with connection.cursor() as cursor:
                for table in tables:
                    cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
                    document[table] = cursor.fetchone()[0]
        else:
            document = {
                "vendor": connection.vendor,
                "tables": {table: table_content(connection, table) for table in tables},
                "sequences": sequences(connection),
            }
        self.stdout.write(json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False))
