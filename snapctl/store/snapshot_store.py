"""The snapshot store as commands use it: new snapshots, lookup by reference, verify, delete
and prune, the same whichever backend keeps the snapshots (a directory, a Django storage)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from snapctl import compression
from snapctl.errors import ConfigurationError, IntegrityError
from snapctl.store import references
from snapctl.store.backend import Backend
from snapctl.store.directory import DirectoryBackend
from snapctl.store.files import NO_FOLLOW_NO_BLOCK, make_private_dirs, refuse_unless_owned
from snapctl.store.leftovers import TEMP_PREFIX, clean_leftovers
from snapctl.store.manifest import Snapshot, checksum_problem, damaged, size_problem
from snapctl.store.pending import PendingSnapshot


class SnapshotStore:
    """Snapshots kept by ``backend`` (by default the directory ``root`` itself).

    ``root`` is the local directory where snapshots are assembled and read: the store itself
    for a directory, this process's scratch space for a remote store.
    """

    def __init__(self, root: Path, *, shared: bool = False, backend: Backend | None = None):
        self.root = root
        # A shared team directory (opted into): others may own and write what is in it.
        self.shared = shared
        self.backend: Backend = backend or DirectoryBackend(root, shared=shared)

    @contextlib.contextmanager
    def open_artifact(self, path: Path) -> Iterator[BinaryIO]:
        """The artifact at ``path``, opened once, never through a link nor waiting on a pipe,
        and refused (exit 3) unless it is the user's own regular file. Whatever reads it
        (the checksum, the unpacking) reads this one open file, so a file swapped in at
        ``path`` after the check is never what is used."""
        try:
            fd = os.open(path, NO_FOLLOW_NO_BLOCK)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError) and exc.errno != errno.ELOOP:
                raise
            raise _not_a_regular_file(path) from exc
        with open(fd, "rb") as handle:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise _not_a_regular_file(path)
            refuse_unless_owned(path, status, shared=self.shared)
            os.set_blocking(fd, True)
            yield handle

    def link_privately(self, stored: BinaryIO, dest: Path) -> bool:
        """Give the open artifact ``stored`` the private name ``dest`` without copying it: a
        symbolic link to ``/proc/<pid>/fd/<n>``, through which this process and the tools
        it starts open the very file that was opened and hashed, whatever is renamed into
        the snapshot later. Only where nobody else can write that file (a shared store's is
        copied instead), and only with Linux's /proc: False elsewhere, and the caller
        copies."""
        if self.shared:
            return False
        opened = Path(f"/proc/{os.getpid()}/fd/{stored.fileno()}")
        try:
            if not os.path.samestat(opened.stat(), os.fstat(stored.fileno())):
                return False
            dest.symlink_to(opened)
        except OSError:
            return False
        return True

    def lock(self, *, shared: bool) -> contextlib.AbstractContextManager[None]:
        """The store's lock: shared while snapshots are read, exclusive while deleted."""
        return self.backend.lock(shared=shared)

    @property
    def where(self) -> str:
        """Where the snapshots are, for messages."""
        return self.backend.where

    def location(self, name: str) -> str:
        """Where one snapshot is, for messages and JSON."""
        return self.backend.location(name)

    def fetch(self, snapshot: Snapshot) -> None:
        """Make the snapshot's artifacts readable under ``snapshot.path``."""
        self.backend.fetch(snapshot)

    def ensure(self) -> None:
        try:
            make_private_dirs(self.root)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create snapshot directory {self.root}: {exc.strerror}"
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ConfigurationError(f"snapshot directory {self.root} is not writable")
        self.clean_leftovers()

    def clean_leftovers(self) -> None:
        """Remove temporary directories of dumps whose process is gone (killed, crashed)."""
        clean_leftovers(self.root)

    @contextlib.contextmanager
    def new_snapshot(
        self, label: str | None, recipients: tuple[str, ...] = ()
    ) -> Iterator[PendingSnapshot]:
        """A snapshot under construction, encrypted to ``recipients`` if any; removed unless
        committed inside the block."""
        self.ensure()
        pending = PendingSnapshot(self, label, recipients)
        try:
            yield pending
        finally:
            if pending.path.name.startswith(TEMP_PREFIX):
                pending.discard()

    def names(self) -> list[str]:
        """The names of the complete snapshots, newest first."""
        return self.backend.names()

    def load(self, name: str) -> Snapshot:
        return self.backend.load(name)

    def snapshots(self) -> list[Snapshot]:
        """Every complete, readable snapshot, newest first (in the order of their names,
        which ``latest`` follows too: a manifest's time must agree with its name); broken
        ones are left out."""
        snapshots = []
        for name in self.names():
            with contextlib.suppress(IntegrityError):
                snapshots.append(self.load(name))
        return snapshots

    def resolve(self, reference: str | None) -> Snapshot:
        """A snapshot by full name, label, unique prefix, or ``latest`` (also the default)."""
        return self.load(self.resolve_name(reference))

    def resolve_name(self, reference: str | None) -> str:
        """The name a reference stands for, without reading the snapshot (it may be broken);
        only names found in the store are ever returned."""
        return references.resolve_name(self.names, reference, self.where)

    def means_newest(self, reference: str | None) -> bool:
        """Whether ``reference`` means "the newest of some": ``latest`` (the default) or a
        label; not a snapshot's name nor a prefix of one."""
        return references.means_newest(self.names, reference)

    def newest(self, reference: str | None, accept: Callable[[Snapshot], bool]) -> Snapshot | None:
        """The newest snapshot ``reference`` (``latest`` or a label) may mean that ``accept``
        takes, None if none does. A damaged one met on the way is an error, as for
        ``latest``: never a quiet step back past it."""
        for name in self.names():
            if references.may_mean(name, reference):
                snapshot = self.load(name)
                if accept(snapshot):
                    return snapshot
        return None

    def verify(self, name: str) -> list[str]:
        """Every problem of a snapshot: its manifest, then each artifact's presence, size and
        checksum. An empty list means it is whole."""
        with self.lock(shared=True):
            return self._problems(name)

    def _problems(self, name: str) -> list[str]:
        try:
            snapshot = self.load(name)
            self.fetch(snapshot)
        except IntegrityError as exc:
            return [str(exc)]
        problems = []
        for artifact in snapshot.artifacts.values():
            try:
                with self.open_artifact(snapshot.path / artifact.file) as stored:
                    problem = size_problem(snapshot, artifact, stored) or checksum_problem(
                        snapshot, artifact, compression.sha256_of(stored)
                    )
            except IntegrityError as exc:
                problem = f"snapshot {name}: {exc}"
            except OSError as exc:
                problem = damaged(snapshot, artifact, f"cannot be read: {exc.strerror}")
            if problem:
                problems.append(problem)
        return problems

    def delete(self, names: list[str], before: Callable[[str], None] | None = None) -> None:
        """Remove snapshots, each first made invisible in one step, then deleted, so none is
        ever seen half-removed; never while another process reads the store.

        ``before(name)`` runs first for each, under the same lock; if it raises, that
        snapshot and the ones after it stay.
        """
        with self.lock(shared=False):
            for name in names:
                if before is not None:
                    before(name)
                self.backend.delete(name)

    def prune_plan(
        self,
        keep: int,
        alias: str | None = None,
        accept: Callable[[Snapshot], bool] = lambda snapshot: True,
    ) -> list[Snapshot]:
        """The snapshots ``prune --keep`` removes: all but the newest ``keep`` of those that
        ``accept`` takes (the project's own databases', say) and that hold ``alias``, if
        given. Unreadable snapshots are never chosen."""
        if keep < 0:
            raise ConfigurationError("--keep must be 0 or more")
        candidates = [
            s for s in self.snapshots() if (alias is None or alias in s.artifacts) and accept(s)
        ]
        return candidates[keep:]


def _not_a_regular_file(path: Path) -> IntegrityError:
    return IntegrityError(
        f"artifact {path.name} of snapshot {path.parent.name} is missing or not a regular "
        "file (a link, a pipe, ...); restore another snapshot"
    )
