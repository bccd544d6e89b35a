"""The snapshot store: where snapshots are kept, how they are named, written, read, checked
and deleted. Layout, manifest format and remote stores: docs/store.md.

- names.py: snapshot names and labels; references.py: what a reference means
- manifest.py (with manifest_fields.py): the manifest, read strictly and written once
- files.py: store files handled as input from outside; leftovers.py: temporary directories
- snapshot_store.py: :class:`SnapshotStore`; pending.py: a snapshot being written
- backend.py: where a store keeps its snapshots, directory.py (a local directory) or
  remote.py (a Django storage, imported only when one is configured)
- config.py: which store a command uses
"""

from snapctl.store.config import choose_store, shared_store
from snapctl.store.leftovers import scratch_prefix
from snapctl.store.manifest import (
    Artifact,
    Snapshot,
    checksum_problem,
    size_problem,
)
from snapctl.store.names import LATEST, is_snapshot_name, snapshot_name, validate_label
from snapctl.store.pending import PendingSnapshot
from snapctl.store.snapshot_store import SnapshotStore

__all__ = [
    "LATEST",
    "Artifact",
    "PendingSnapshot",
    "Snapshot",
    "SnapshotStore",
    "checksum_problem",
    "choose_store",
    "is_snapshot_name",
    "scratch_prefix",
    "shared_store",
    "size_problem",
    "snapshot_name",
    "validate_label",
]
