"""Snapshots kept in a Django storage backend (S3 through django-storages, or any other).

The layout is the local one under a prefix: ``<prefix>/<name>/<artifact>`` and
``<prefix>/<name>/manifest.json``. A snapshot is assembled in a local scratch directory as
usual, then its artifacts are uploaded (streamed from their files; S3 sends large ones in
parts) and the manifest last: only a snapshot whose manifest exists is listed, so an upload
that dies part-way is never seen. Restore downloads the artifacts into the scratch directory,
streaming, and verifies their checksums there before any database is touched. Deleting
removes the manifest first, so a half-deleted snapshot is invisible too.

Credentials stay in the storage's own configuration; snapctl never prints them.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed
from snapctl.snapshots import (
    MANIFEST,
    Snapshot,
    SnapshotStore,
    _parse_manifest,
    is_snapshot_name,
)

CHUNK = 1024 * 1024
DEFAULT_PREFIX = "snapshots"


def _secrets_of(storage: Any) -> list[str]:
    """Values a storage error message must never show."""
    names = ("secret_key", "access_key", "security_token", "session_token", "password")
    return [str(v) for n in names if (v := getattr(storage, n, None))]


class RemoteStore(SnapshotStore):
    """A store in a Django storage; ``root`` is local scratch space for this process."""

    def __init__(self, storage: Any, prefix: str, scratch: Path, label: str) -> None:
        super().__init__(scratch)
        self.storage = storage
        self.prefix = prefix.strip("/")
        self.label = label

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _failed(self, doing: str, exc: Exception) -> OperationFailed:
        message = f"{type(exc).__name__}: {exc}"
        for secret in _secrets_of(self.storage):
            message = message.replace(secret, "***")
        return OperationFailed(f"{doing} in {self.label} failed: {message}")

    @property
    def where(self) -> str:
        return self.label

    def location(self, name: str) -> str:
        return f"{self.label}/{name}"

    def taken(self, name: str) -> bool:
        return super().taken(name) or self._exists(self._key(name, MANIFEST))

    def _exists(self, key: str) -> bool:
        try:
            return bool(self.storage.exists(key))
        except Exception as exc:
            raise self._failed(f"looking up {key}", exc) from exc

    def names(self) -> list[str]:
        try:
            directories, _ = self.storage.listdir(self.prefix)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._failed("listing snapshots", exc) from exc
        complete = [
            name
            for name in directories
            if is_snapshot_name(name) and self._exists(self._key(name, MANIFEST))
        ]
        return sorted(complete, reverse=True)

    def _download(self, key: str, dest: Path) -> None:
        try:
            with self.storage.open(key, "rb") as remote, open(dest, "wb") as local:
                shutil.copyfileobj(remote, local, CHUNK)
        except FileNotFoundError as exc:
            raise IntegrityError(f"{self.label}: {key} is missing") from exc
        except OSError:
            raise  # the local disk: the caller reports it
        except Exception as exc:
            raise self._failed(f"downloading {key}", exc) from exc
        dest.chmod(0o600)

    def _upload(self, path: Path, key: str) -> None:
        from django.core.files import File

        try:
            with open(path, "rb") as handle:
                saved = self.storage.save(key, File(handle, name=path.name))
        except Exception as exc:
            raise self._failed(f"uploading {key}", exc) from exc
        if saved != key:
            raise OperationFailed(
                f"{self.label} stored {key} as {saved}: the storage must overwrite or keep "
                "names as given (for S3, AWS_S3_FILE_OVERWRITE = True)"
            )

    def load(self, name: str) -> Snapshot:
        local = self.root / name
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (local / MANIFEST).exists():
            self._download(self._key(name, MANIFEST), local / MANIFEST)
        return _parse_manifest(local)

    def fetch(self, snapshot: Snapshot) -> None:
        for artifact in snapshot.artifacts.values():
            local = snapshot.path / artifact.file
            if not local.exists():
                self._download(self._key(snapshot.name, artifact.file), local)

    def publish(self, snapshot: Snapshot) -> None:
        """Upload the artifacts, then the manifest, which makes the snapshot visible."""
        uploaded: list[str] = []
        try:
            for artifact in snapshot.artifacts.values():
                key = self._key(snapshot.name, artifact.file)
                self._upload(snapshot.path / artifact.file, key)
                uploaded.append(key)
            self._upload(snapshot.path / MANIFEST, self._key(snapshot.name, MANIFEST))
        except BaseException:
            for key in uploaded:  # best effort: without a manifest they are invisible anyway
                with contextlib.suppress(Exception):
                    self.storage.delete(key)
            shutil.rmtree(snapshot.path, ignore_errors=True)
            raise
        shutil.rmtree(snapshot.path, ignore_errors=True)  # the scratch copy has done its job

    def _delete(self, name: str) -> None:
        directory = self._key(name)
        try:
            self.storage.delete(self._key(name, MANIFEST))  # invisible from here on
            _, files = self.storage.listdir(directory)
            for file in files:
                self.storage.delete(self._key(name, file))
        except Exception as exc:
            raise self._failed(f"deleting {name}", exc) from exc
        shutil.rmtree(self.root / name, ignore_errors=True)


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
