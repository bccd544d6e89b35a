"""Which snapshot store a command uses: one answer for the commands and for completion."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from snapctl.errors import ConfigurationError
from snapctl.snapshots import SnapshotStore, store_root


def choose_store(
    directory: Path | None,
    storage: str | None,
    *,
    shared_flag: bool,
    load_settings: Callable[[], None],
    scratch: Callable[[], Path],
) -> SnapshotStore:
    """``--dir``, else ``--storage``, else ``SNAPCTL_DIR``, else what the settings say; the
    settings are loaded (``load_settings``) only if the answer must come from them. A store
    in a Django storage keeps its local copies in the directory ``scratch()`` gives."""
    if directory is not None and storage:
        raise ConfigurationError("use either --dir or --storage, not both")
    if directory is not None or (not storage and os.environ.get("SNAPCTL_DIR")):
        root = store_root(directory, settings_loaded=False)
        return SnapshotStore(root, shared=shared_store(shared_flag))
    load_settings()
    from snapctl.remote import RemoteStore, configured_storage

    found = configured_storage(storage)
    if found is not None:
        backend, prefix, label = found
        return RemoteStore(backend, prefix, scratch(), label)
    return SnapshotStore(store_root(None, settings_loaded=True), shared=shared_store(shared_flag))


def shared_store(flag: bool) -> bool:
    """``--shared-store`` (``flag``), else ``SNAPSHOTS["SHARED_STORE"]`` when the settings
    are loaded (by the command, as dump and restore do, even when ``--dir`` names the
    store)."""
    if flag:
        return True
    from snapctl import django_env

    if not django_env.settings_loaded():
        return False
    return bool(django_env.snapshot_settings().get("SHARED_STORE", False))
