"""MySQL and MariaDB, with mysqldump/mariadb-dump and mysql/mariadb."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class MySQLConnector:
    """Back up and restore MySQL/MariaDB databases using mysqldump and mysql."""

    name = "mysql"
    engines = ("mysql",)
    binaries = ("mariadb-dump|mysqldump", "mariadb|mysql")
    extension = "sql"

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, db_alias: str, src: Path) -> None:
        raise NotImplementedError
