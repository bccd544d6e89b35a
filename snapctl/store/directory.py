"""Snapshots kept in a local directory: the store's own ``root``."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from snapctl import locks
from snapctl.errors import ConfigurationError, OperationFailed
from snapctl.store.files import check_owned
from snapctl.store.leftovers import scratch_prefix
from snapctl.store.manifest import MANIFEST, Snapshot, read_manifest
from snapctl.store.names import is_snapshot_name


class DirectoryBackend:
    """The snapshots are the directories ``<root>/<name>``; read only if the user's own
    unless the store is ``shared``."""

    def __init__(self, root: Path, *, shared: bool) -> None:
        self.root = root
        self.shared = shared

    @property
    def where(self) -> str:
        return str(self.root)

    def location(self, name: str) -> str:
        return str(self.root / name)

    def lock(self, *, shared: bool) -> contextlib.AbstractContextManager[None]:
        return locks.store_lock(self.root, shared=shared)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        check_owned(self.root, shared=self.shared)
        try:
            entries = list(self.root.iterdir())
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read snapshot directory {self.root}: {exc.strerror}"
            ) from exc
        return sorted(
            (
                p.name
                for p in entries
                if is_snapshot_name(p.name) and p.is_dir() and not p.is_symlink()
            ),
            reverse=True,
        )

    def taken(self, name: str) -> bool:
        return (self.root / name).exists()

    def load(self, name: str) -> Snapshot:
        check_owned(self.root / name, shared=self.shared)
        check_owned(self.root / name / MANIFEST, shared=self.shared)
        return read_manifest(self.root / name)

    def fetch(self, snapshot: Snapshot) -> None:
        """Local artifacts are readable where they are."""

    def publish(self, snapshot: Snapshot) -> None:
        """A snapshot renamed into ``root`` is published."""

    def delete(self, name: str) -> None:
        """Renamed out of sight in one step, then removed."""
        doomed = self.root / f"{scratch_prefix()}delete-{name}"
        try:
            os.rename(self.root / name, doomed)
        except OSError as exc:
            raise OperationFailed(f"cannot delete snapshot {name}: {exc.strerror}") from exc
        shutil.rmtree(doomed, ignore_errors=True)
