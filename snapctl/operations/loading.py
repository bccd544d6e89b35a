"""What dumping, restoring, preparing and the hooks share about connectors: loading the one
a manifest names, checking it can run here, verifying an artifact into a private file, and
turning its failures and the disk's into clear errors."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from snapctl import compression, registry
from snapctl.connectors.api import Capabilities, LeavesOutData, TakesExclusions
from snapctl.errors import ConfigurationError, OperationFailed, SnapctlError
from snapctl.progress import Progress, read_position
from snapctl.store import Artifact, SnapshotStore


def vendor_of(alias: str) -> str:
    from snapctl.django_env import database_vendor

    return database_vendor(alias)


def start_apps_for(connectors: Sequence[registry.LoadedConnector]) -> None:
    """Populate Django's app registry if any of ``connectors`` needs models; the built-in
    SQLite, PostgreSQL and MySQL connectors read only the settings."""
    if any(loaded.capabilities.needs_app_registry for loaded in connectors):
        from snapctl.django_env import require_apps

        require_apps()


def add_exclusions(name: str, loaded: registry.LoadedConnector, exclude: Sequence[str]) -> None:
    """``--exclude`` for a connector that takes exclusions (its ``exclude`` attribute)."""
    if not exclude:
        return
    if not loaded.capabilities.takes_exclusions:
        raise ConfigurationError(
            f"connector '{name}' takes no exclusions; --exclude is for the dumpdata connector"
        )
    taking = cast(TakesExclusions, loaded.connector)
    taking.exclude = (*(taking.exclude or ()), *exclude)  # None: none yet


def add_data_exclusions(name: str, loaded: registry.LoadedConnector, tables: Sequence[str]) -> None:
    """The tables whose rows a dump leaves out, for a connector that can (``exclude_data``)."""
    if not tables:
        return
    if not loaded.capabilities.leaves_out_data:
        raise ConfigurationError(
            f"connector '{name}' cannot leave out the rows of {', '.join(tables)} "
            "(--exclude-data, SNAPSHOTS['EXCLUDE_DATA']); the built-in connectors can: sqlite, "
            "postgres, postgres-template, mysql, dumpdata"
        )
    cast(LeavesOutData, loaded.connector).exclude_data = tuple(tables)


def check_binaries(choice_name: str, capabilities: Capabilities) -> None:
    missing = registry.missing_binaries(capabilities)
    if missing:
        raise ConfigurationError(
            f"connector '{choice_name}' needs {', '.join(missing)} on PATH; install the "
            "database's client tools"
        )


@contextlib.contextmanager
def connector_errors(action: str, connector: str, alias: str) -> Iterator[None]:
    """Turn a third-party connector's unexpected exception into one clear line."""
    try:
        yield
    except SnapctlError:
        raise
    except Exception as exc:
        raise OperationFailed(
            f"{action} of '{alias}' with connector '{connector}' failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


@contextlib.contextmanager
def disk_errors(doing: str, outcome: str) -> Iterator[None]:
    """A full disk or a file-size limit is a failed operation with one clear line."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError) or exc.strerror is None:
            raise
        raise OperationFailed(f"{doing} failed: {exc.strerror}; {outcome}") from exc


def connector_for_restore(alias: str, artifact: Artifact) -> registry.LoadedConnector:
    """The connector the manifest names, by name only: the one configured for the alias if
    it has that name, else the installed or configured one of that name. A name nothing
    here answers to is a usage error: install it first."""
    current = registry.choose(alias)
    if current.name == artifact.connector:
        return current.loaded
    found = registry.resolve(artifact.connector)
    if found is None:
        raise ConfigurationError(
            f"the snapshot of '{alias}' was taken with connector '{artifact.connector}' "
            f"({artifact.connector_source}), which is not installed here; install it first"
        )
    return found.create()


def unpacked_name(artifact: Artifact) -> str:
    """The artifact's file name without its compression and encryption suffixes: connectors
    read the format from it (``default.sql``)."""
    suffix = artifact.suffix
    return artifact.file.removesuffix(suffix) if suffix else artifact.file


def unsealer(artifact: Artifact) -> compression.Unseal | None:
    """How to read an encrypted artifact's plaintext with the user's identities (a
    :class:`ConfigurationError` naming its recipients if none of them can); None for an
    artifact stored unencrypted."""
    if artifact.encryption is None:
        return None
    from snapctl.encryption import keys, streams

    identities = keys.identities_for(
        artifact.encryption.recipients, f"the snapshot of '{artifact.alias}'"
    )
    return functools.partial(
        streams.decrypting,
        identities=identities,
        name=artifact.file,
        plaintext_sha256=artifact.encryption.plaintext_sha256,
    )


def unpack_limit(artifact: Artifact, scratch: Path, *, needs_room: bool) -> int:
    """How far unpacking ``artifact`` into ``scratch`` may go: the size its manifest records,
    refused up front if it ``needs_room`` and the disk has not that much; for an older
    snapshot that records none, the room there is, so that a crafted one cannot fill it."""
    free = shutil.disk_usage(scratch).free
    if artifact.unpacked_size is None:
        return free
    if needs_room and artifact.unpacked_size > free:
        raise OperationFailed(
            f"unpacking {artifact.file} needs {artifact.unpacked_size} bytes in {scratch}, "
            f"which has {free} free; make room, no database was touched"
        )
    return artifact.unpacked_size


def scratch_dir(store: SnapshotStore) -> str | None:
    """Unpack next to the snapshots (same disk, sized for dumps) when that is writable and
    the user's alone; in a shared store, where others could rename the scratch directory
    and plant links in its place, in the private temporary directory instead."""
    if store.shared or not os.access(store.root, os.W_OK):
        return None
    return str(store.root)


def verify_into(
    private: Path, store: SnapshotStore, artifact: Artifact, stored: BinaryIO, progress: Progress
) -> str:
    """Hash the open artifact ``stored`` while giving its content the private name
    ``private``, unpacked, for its connector to restore from; the sha256 read. A link to the
    open file where nobody else can write it and it needs no unpacking, else a copy made
    while hashing."""
    unseal = unsealer(artifact)
    if artifact.compression == "none" and unseal is None and store.link_privately(stored, private):
        with progress.track(f"Verifying {artifact.alias}", *reading(stored, artifact)):
            return compression.sha256_of(stored)
    limit = unpack_limit(artifact, private.parent, needs_room=True)
    with (
        progress.track(f"Verifying {artifact.alias}", *reading(stored, artifact)),
        disk_errors(f"unpacking {artifact.file}", "no database was touched"),
    ):
        return compression.decompress(
            stored, artifact.file, private, artifact.compression, limit, unseal
        )


def reading(stored: BinaryIO, artifact: Artifact) -> tuple[Callable[[], int], int]:
    """Progress of reading an artifact through: how far, of how much."""
    return read_position(stored.fileno()), artifact.size
