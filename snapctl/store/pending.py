"""A new snapshot, assembled in a private temporary directory of the store and renamed into
place only when complete, so that a dump that dies never leaves anything ``list`` shows or
``restore`` accepts."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snapctl import compression, receiver
from snapctl.encryption import keys
from snapctl.errors import IntegrityError
from snapctl.receiver import Received
from snapctl.store.files import fsync_dir, fsync_file
from snapctl.store.leftovers import scratch_prefix
from snapctl.store.manifest import (
    Artifact,
    Encryption,
    Snapshot,
    read_manifest,
    write_manifest,
)
from snapctl.store.names import snapshot_name

if TYPE_CHECKING:
    from snapctl.store.snapshot_store import SnapshotStore


class PendingSnapshot:
    """A snapshot being written in a private temporary directory."""

    def __init__(
        self, store: SnapshotStore, label: str | None, recipients: tuple[str, ...] = ()
    ) -> None:
        self.store = store
        self.label = label
        # Every artifact is encrypted to these (public keys), if any.
        self.recipients = recipients
        self._sealing = [keys.parse_recipient(recipient) for recipient in recipients]
        self.created = datetime.now(timezone.utc)
        self.path = Path(tempfile.mkdtemp(prefix=scratch_prefix(), dir=store.root))
        self.artifacts: dict[str, Artifact] = {}

    def scratch_path(self, alias: str, extension: str) -> Path:
        """Where a connector writes its uncompressed dump of ``alias``."""
        return self.path / f"{alias}.{extension}" if extension else self.path / alias

    def final_path(self, raw: Path, method: str) -> Path:
        """The artifact's file once compressed with ``method`` (and encrypted)."""
        encrypted = compression.ENCRYPTED_SUFFIX if self.recipients else ""
        return raw.with_name(raw.name + compression.SUFFIXES[method] + encrypted)

    def add(self, alias: str, raw: Path, method: str, level: int | None, **fields: Any) -> Artifact:
        """Compress (or keep) the connector's file, checksum it, and record it."""
        if not raw.exists():
            # A connector may keep its data elsewhere (a server-side copy, say) and return
            # only metadata; an empty artifact keeps the snapshot's shape and checksums.
            raw.touch()
        if not raw.is_file():
            raise IntegrityError(f"connector '{fields['connector']}' wrote no file for {alias}")
        if method == "none" and not self.recipients:
            final = raw
            size = raw.stat().st_size
            final.chmod(0o600)
            fsync_file(final)
            digest = compression.file_sha256(raw)
            return self.record(alias, final, method, size, digest, unpacked_size=size, **fields)
        final = self.final_path(raw, method)
        written = compression.compress(raw, final, method, level, self._sealing)
        raw.unlink()
        return self.record(
            alias,
            final,
            method,
            written.size,
            written.sha256,
            unpacked_size=written.unpacked,
            plaintext_sha256=written.plaintext_sha256,
            **fields,
        )

    @contextlib.contextmanager
    def receive(self, raw: Path, method: str, level: int | None) -> Iterator[Received | None]:
        """A named pipe beside ``raw`` for a connector to dump into, the artifact written,
        compressed, as the dump arrives (see receiver.py); None where no pipe can be made
        (a filesystem without them), and the connector then writes ``raw``."""
        pipe = raw.with_name(raw.name + ".pipe")
        if not receiver.make_pipe(pipe):
            yield None
            return
        final = self.final_path(raw, method)
        with receiver.receive(pipe, final, method, level, self._sealing) as received:
            yield received

    def record(
        self,
        alias: str,
        final: Path,
        method: str,
        size: int,
        digest: str,
        plaintext_sha256: str | None = None,
        **fields: Any,
    ) -> Artifact:
        """Record a complete artifact file, already private and flushed to disk; encrypted
        if ``plaintext_sha256`` (of what was encrypted) is given."""
        encryption = (
            Encryption(self.recipients, plaintext_sha256) if plaintext_sha256 is not None else None
        )
        artifact = Artifact(
            alias=alias,
            file=final.name,
            compression=method,
            size=size,
            sha256=digest,
            encryption=encryption,
            **fields,
        )
        self.artifacts[alias] = artifact
        return artifact

    def commit(self, snapctl_version: str, django_version: str) -> Snapshot:
        """Write the manifest and move the snapshot into place atomically."""
        while True:
            name = snapshot_name(self.created, self.label)
            if not self.store.backend.taken(name):
                write_manifest(
                    self.path,
                    name=name,
                    label=self.label,
                    created=self.created,
                    snapctl_version=snapctl_version,
                    django_version=django_version,
                    artifacts=self.artifacts,
                )
                try:
                    # rename() never replaces a snapshot: it fails on a non-empty directory.
                    os.rename(self.path, self.store.root / name)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            # Another dump took this millisecond: the next one keeps names sortable.
            self.created += timedelta(milliseconds=1)
        fsync_dir(self.store.root)
        self.path = self.store.root / name
        snapshot = read_manifest(self.path)
        self.store.backend.publish(snapshot)
        return snapshot

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
