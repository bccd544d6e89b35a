"""Advisory locks, so that concurrent snapctl processes fail clearly instead of colliding.

- The store: restore and verify read snapshots under a shared lock; delete and prune take it
  exclusively, so a snapshot is never deleted while another process reads it. Dumps need no
  lock: they only add, and a snapshot appears by rename when complete.
  A store in a storage backend (S3) is locked by what it is (backend, bucket, endpoint,
  prefix) in the per-user lock directory, since its ``root`` is each process's own scratch.
- A database: one restore at a time into the same database, whichever store it comes from.

Locks are never waited for: a busy lock is an error saying who holds it, so scripts and CI
never hang. The kernel releases them when a process dies, even by kill -9.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from snapctl.errors import ConfigurationError, OperationFailed
from snapctl.store.files import is_private_dir

STORE_LOCK = ".lock"


@contextlib.contextmanager
def _hold(path: Path, *, shared: bool, busy: str) -> Iterator[None]:
    # Never through a link: a planted one would make us create or open a file elsewhere.
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o600)
        except PermissionError:
            if not shared:
                raise
            fd = os.open(path, os.O_RDONLY | flags)  # another user's, in a shared store
    except OSError as exc:
        raise ConfigurationError(
            f"cannot open the lock file {path}: {exc.strerror}; if you did not make it, remove it"
        ) from exc
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OperationFailed(busy) from exc
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def store_lock(root: Path, *, shared: bool) -> Iterator[None]:
    """Shared for reading snapshots, exclusive for deleting them."""
    if not root.is_dir():
        yield
        return
    busy = (
        f"snapshot directory {root} is being read by another snapctl (a restore or verify); "
        "try again when it is done"
        if not shared
        else f"snapshots in {root} are being deleted by another snapctl; try again"
    )
    with _hold(root / STORE_LOCK, shared=shared, busy=busy):
        yield


@contextlib.contextmanager
def identity_lock(identity: Mapping[str, str], *, label: str, shared: bool) -> Iterator[None]:
    """``store_lock`` for a store that is not a local directory: keyed by ``identity`` (what
    the store is), so every process of this user that uses it meets on one lock file."""
    key = hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()[:16]
    busy = (
        f"snapshots in {label} are being read by another snapctl (a restore or verify); "
        "try again when it is done"
        if not shared
        else f"snapshots in {label} are being deleted by another snapctl; try again"
    )
    with _hold(_locks_dir() / f"store-{key}.lock", shared=shared, busy=busy):
        yield


def _locks_dir() -> Path:
    """``$TMPDIR/snapctl-<uid>``, made private, and refused unless it is a directory of
    ours that nobody else can write: anyone can create that name first in a shared /tmp."""
    path = Path(tempfile.gettempdir()) / f"snapctl-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    if not is_private_dir(path):
        raise ConfigurationError(
            f"lock directory {path} is not a private directory of yours (mode 0700, owned by "
            "you); remove it, or point TMPDIR at a private directory"
        )
    return path


@contextlib.contextmanager
def database_lock(alias: str, settings: dict[str, Any]) -> Iterator[None]:
    """Held while restoring into one database, keyed by where it is, not by its alias."""
    where = {key: str(settings.get(key) or "") for key in ("ENGINE", "HOST", "PORT", "NAME")}
    key = hashlib.sha256(json.dumps(where, sort_keys=True).encode()).hexdigest()[:16]
    busy = f"another snapctl is restoring into database '{alias}'; try again when it is done"
    with _hold(_locks_dir() / f"restore-{key}.lock", shared=False, busy=busy):
        yield
