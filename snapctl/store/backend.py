"""Where a store keeps its snapshots: what :class:`~snapctl.store.snapshot_store.SnapshotStore`
asks of a local directory (directory.py) or a Django storage (remote.py).

A snapshot is always assembled, and read, in the store's local directory (its ``root``); a
backend lists, loads, makes readable, publishes and deletes whole snapshots (docs/store.md).
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from snapctl.store.manifest import Snapshot


class Backend(Protocol):
    @property
    def where(self) -> str:
        """Where the snapshots are, for messages."""
        ...

    def location(self, name: str) -> str:
        """Where one snapshot is, for messages and JSON."""
        ...

    def lock(self, *, shared: bool) -> contextlib.AbstractContextManager[None]:
        """The store's lock: shared while snapshots are read, exclusive while deleted."""
        ...

    def names(self) -> list[str]:
        """The names of the complete snapshots, newest first."""
        ...

    def taken(self, name: str) -> bool:
        """Whether a snapshot ``name`` exists, complete or not."""
        ...

    def load(self, name: str) -> Snapshot:
        """The snapshot ``name`` as its manifest describes it, at ``root / name``."""
        ...

    def fetch(self, snapshot: Snapshot) -> None:
        """Make the snapshot's artifacts readable under ``snapshot.path``."""
        ...

    def publish(self, snapshot: Snapshot) -> None:
        """Called once a new snapshot is complete at ``snapshot.path`` in ``root``."""
        ...

    def delete(self, name: str) -> None:
        """Remove the snapshot ``name``, never leaving it visible half-removed."""
        ...
