"""The connector protocol, unchanged from the reference API so existing connectors work here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DatabaseConnector(Protocol):
    """Interface for dumping and restoring a single database alias.

    Optional class attributes, read with defaults when absent:
    ``name`` (registry name), ``engines`` (ENGINE substrings it claims), ``binaries`` (programs
    it needs on PATH), ``extension`` (artifact file suffix), ``portable`` (its snapshots may be
    restored into another engine), ``needs_app_registry`` (default True: ``django.setup()``
    runs before it; False when the settings alone are enough, which saves seconds on a
    project with many apps).
    """

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump the database to dest and return artifact metadata."""
        ...

    def restore(self, db_alias: str, src: Path) -> None:
        """Restore the database from the dump file at src."""
        ...
