"""Where the snapshot store is and which one a command uses: one answer for the commands and
for completion. A store in a Django storage is configured through Django's ``STORAGES``
(docs/store.md, "Remote stores")."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snapctl.errors import ConfigurationError
from snapctl.store.snapshot_store import SnapshotStore

DEFAULT_PREFIX = "snapshots"


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
    found = configured_storage(storage)
    if found is not None:
        from snapctl.store.remote import StorageBackend

        django_storage, prefix, label = found
        root = scratch()
        return SnapshotStore(root, backend=StorageBackend(django_storage, prefix, root, label))
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


def store_root(explicit: Path | None, *, settings_loaded: bool) -> Path:
    """Where snapshots live: ``--dir`` > ``SNAPCTL_DIR`` > ``SNAPSHOTS["DIRECTORY"]`` > a
    per-project directory under the user's data directory.

    The last two need the project's settings; ``settings_loaded`` says whether they are loaded.
    """
    if explicit is not None:
        return explicit.expanduser().resolve()
    from_env = os.environ.get("SNAPCTL_DIR")
    if from_env:
        return Path(from_env).expanduser().resolve()
    if not settings_loaded:
        raise ConfigurationError(
            "no snapshot directory: pass --dir, set SNAPCTL_DIR, or point snapctl at the "
            "project with --settings"
        )
    from snapctl.django_env import project_key, snapshot_settings

    configured = snapshot_settings().get("DIRECTORY")
    if configured:
        return Path(str(configured)).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("snapctl") / project_key()


def configured_storage(requested: str | None) -> tuple[Any, str, str] | None:
    """The storage named by ``--storage`` or ``SNAPSHOTS["STORAGE"]``, the prefix in it and a
    label for messages; None when snapshots stay in a local directory.

    ``SNAPSHOTS["STORAGE"]`` is the name of an entry in Django's ``STORAGES``, or a dict like
    one (``{"BACKEND": ..., "OPTIONS": {...}}``); ``SNAPSHOTS["STORAGE_PREFIX"]`` is the
    folder inside it (default ``snapshots``).
    """
    from django.core.files.storage import InvalidStorageError, storages

    from snapctl.django_env import require_apps, snapshot_settings

    snapshots = snapshot_settings()
    choice = requested or snapshots.get("STORAGE")
    if not choice:
        return None
    # A storage backend is a plugin like any other: it may expect django.setup() to have run.
    require_apps()
    prefix = str(snapshots.get("STORAGE_PREFIX", DEFAULT_PREFIX))
    try:
        if isinstance(choice, dict):
            storage = storages.create_storage(choice)
        else:
            storage = storages[str(choice)]
    except InvalidStorageError as exc:
        raise ConfigurationError(
            f"no storage '{choice}' in settings.STORAGES; add it or fix SNAPSHOTS['STORAGE']"
        ) from exc
    except ImportError as exc:
        raise ConfigurationError(f"the snapshot storage cannot be loaded: {exc}") from exc
    bucket = getattr(storage, "bucket_name", None)
    where = f"s3://{bucket}" if bucket else f"storage '{choice}'"
    return storage, prefix, f"{where}/{prefix}".rstrip("/")
