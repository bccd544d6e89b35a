"""Snapshots kept in a Django storage (S3 through django-storages, or any other): the layout
of a local store under a prefix, the manifest uploaded last and deleted first. How and why:
docs/store.md, "Remote stores". Credentials stay in the storage's own configuration; snapctl
never prints them.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from snapctl import locks
from snapctl.errors import IntegrityError, OperationFailed
from snapctl.store.manifest import MANIFEST, MAX_MANIFEST, Snapshot, read_manifest
from snapctl.store.names import is_snapshot_name

CHUNK = 1024 * 1024
# Where the backends that Django and django-storages ship live (see _backend_path).
_BACKEND_MODULES = ("storages.backends.", "django.core.files.storage.")


def _secrets_of(storage: Any) -> list[str]:
    """Values a storage error message must never show."""
    names = ("secret_key", "access_key", "security_token", "session_token", "password")
    return [str(v) for n in names if (v := getattr(storage, n, None))]


def _backend_path(storage: Any) -> str:
    """The storage's backend class as the library shipping it names it: a project's own
    subclass (defaults set, a hook added) still reaches the same bucket, so it must meet
    the same lock. A backend of no such library is named by its own class."""
    for cls in type(storage).__mro__:
        module = cls.__module__
        if module.startswith(_BACKEND_MODULES) and not module.endswith((".base", ".mixins")):
            return f"{module}.{cls.__qualname__}"
    return f"{type(storage).__module__}.{type(storage).__qualname__}"


def _plain_name(name: str) -> bool:
    """Whether a listed name stays where it was listed: storages normalize keys, so an
    object planted as ``<snapshot>/../<other>/x`` lists a folder ``..`` that, followed,
    would reach another snapshot."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _stated_size(remote: Any) -> int:
    """The object's size if the storage knows it before reading (S3 from the HEAD it makes
    on open: its file object then reads the whole object into memory); 0 otherwise."""
    size = getattr(remote, "size", None)
    return size if isinstance(size, int) else 0


def _copy_at_most(source: Any, dest: BinaryIO, limit: int) -> bool:
    """Copy ``source`` into ``dest``; False, with no more than ``limit`` bytes written, if it
    holds more."""
    written = 0
    while chunk := source.read(min(CHUNK, limit + 1 - written)):
        if written + len(chunk) > limit:
            return False
        dest.write(chunk)
        written += len(chunk)
    return True


class StorageBackend:
    """Snapshots in a Django ``storage`` under ``prefix``, read and written through the local
    directory ``scratch`` (the store's ``root``, this process's own); ``label`` names the
    store in messages."""

    def __init__(self, storage: Any, prefix: str, scratch: Path, label: str) -> None:
        self.storage = storage
        self.scratch = scratch
        self.prefix = prefix.strip("/")
        self.label = label

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _failed(self, doing: str, exc: Exception) -> OperationFailed:
        message = f"{type(exc).__name__}: {exc}"
        for secret in _secrets_of(self.storage):
            message = message.replace(secret, "***")
        return OperationFailed(f"{doing} in {self.label} failed: {message}")

    def identity(self) -> dict[str, str]:
        """What this store is, the same from every process and checkout that uses it."""
        storage = self.storage
        return {
            "backend": _backend_path(storage),
            "bucket": str(getattr(storage, "bucket_name", None) or ""),
            "endpoint": str(getattr(storage, "endpoint_url", None) or "").rstrip("/"),
            "location": str(getattr(storage, "location", None) or "").strip("/"),
            "prefix": self.prefix,
        }

    def lock(self, *, shared: bool) -> contextlib.AbstractContextManager[None]:
        """By the store's identity, not by ``scratch``: that is this process's own, where a
        prune would never see a restore in another process reading the same bucket."""
        return locks.identity_lock(self.identity(), label=self.label, shared=shared)

    @property
    def where(self) -> str:
        return self.label

    def location(self, name: str) -> str:
        return f"{self.label}/{name}"

    def taken(self, name: str) -> bool:
        return (self.scratch / name).exists() or self._exists(self._key(name, MANIFEST))

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

    def _download(self, key: str, dest: Path, limit: int, bound: str) -> None:
        """Copy ``key`` into ``dest``, refused past ``limit`` bytes (``bound`` says why that
        much): the bucket is input from outside, and an object planted there must fill
        neither the disk nor the memory before a checksum can refuse it. On any failure
        the partial file goes, so that it never passes for a downloaded one."""
        try:
            self._copy(key, dest, limit, bound)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        dest.chmod(0o600)

    def _copy(self, key: str, dest: Path, limit: int, bound: str) -> None:
        try:
            with self.storage.open(key, "rb") as remote, open(dest, "wb") as local:
                if _stated_size(remote) > limit or not _copy_at_most(remote, local, limit):
                    raise IntegrityError(
                        f"{self.label}: {key} is larger than {limit} bytes, {bound}; it is "
                        "damaged or was replaced, restore another snapshot"
                    )
        except FileNotFoundError as exc:
            raise IntegrityError(f"{self.label}: {key} is missing") from exc
        except (OSError, IntegrityError):
            raise  # the local disk (the caller reports it), or the refusal above
        except Exception as exc:
            raise self._failed(f"downloading {key}", exc) from exc

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
        local = self.scratch / name
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (local / MANIFEST).exists():
            self._download(
                self._key(name, MANIFEST),
                local / MANIFEST,
                MAX_MANIFEST,
                "the most a manifest can be",
            )
        return read_manifest(local)

    def fetch(self, snapshot: Snapshot) -> None:
        for artifact in snapshot.artifacts.values():
            local = snapshot.path / artifact.file
            if not local.exists():
                key = self._key(snapshot.name, artifact.file)
                self._download(key, local, artifact.size, "the size its manifest records")

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

    def delete(self, name: str) -> None:
        """The manifest first, which makes the snapshot invisible, then every object under
        its prefix."""
        try:
            self.storage.delete(self._key(name, MANIFEST))  # invisible from here on
            self._delete_tree(self._key(name))
        except Exception as exc:
            raise self._failed(f"deleting {name}", exc) from exc
        shutil.rmtree(self.scratch / name, ignore_errors=True)

    def _delete_tree(self, directory: str) -> None:
        """Every object under ``directory``, in nested folders too: S3 has no folders, only
        keys, and one left under the prefix would be kept (and paid for) for good."""
        pending = [directory]
        while pending:
            current = pending.pop()
            folders, files = self.storage.listdir(current)
            for file in filter(_plain_name, files):
                self.storage.delete(f"{current}/{file}")
            pending.extend(f"{current}/{folder}" for folder in filter(_plain_name, folders))
