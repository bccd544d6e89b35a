"""PostgreSQL, with pg_dump and pg_restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PostgresConnector:
    """Back up and restore PostgreSQL databases using pg_dump and psql."""

    name = "postgres"
    engines = ("postgresql", "postgis")
    binaries = ("pg_dump", "pg_restore", "psql")
    extension = "pgdump"

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, db_alias: str, src: Path) -> None:
        raise NotImplementedError
