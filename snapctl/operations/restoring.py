"""Restore: choose the snapshot and connectors, verify every artifact, then restore."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, cast

from snapctl import compression, locks, registry
from snapctl.connectors.api import RestoresWhileUnpacking
from snapctl.errors import ConfigurationError, IntegrityError, SnapshotNotFound
from snapctl.operations import preparing
from snapctl.operations.hooks import call_hook
from snapctl.operations.loading import (
    add_exclusions,
    check_binaries,
    connector_errors,
    connector_for_restore,
    disk_errors,
    reading,
    scratch_dir,
    start_apps_for,
    unpack_limit,
    unpacked_name,
    unsealer,
    vendor_of,
    verify_into,
)
from snapctl.prepared_copies import CopyRecord, Records
from snapctl.progress import NoProgress, Progress
from snapctl.store import (
    LATEST,
    Artifact,
    Snapshot,
    SnapshotStore,
    checksum_problem,
    scratch_prefix,
    size_problem,
)
from snapctl.unpacking import Unpacking


@dataclass(frozen=True)
class RestorePlan:
    snapshot: Snapshot
    aliases: list[str]
    connectors: dict[str, registry.LoadedConnector]
    # Said before the restore: the snapshot is of another database than the one restored.
    notes: list[str] = field(default_factory=list)


def plan_restore(
    store: SnapshotStore,
    reference: str | None,
    aliases: Sequence[str],
    *,
    from_any: bool = False,
    exclude: Sequence[str] = (),
) -> RestorePlan:
    """Check everything that can be checked without reading artifacts."""
    from snapctl.django_env import database_settings

    snapshot = _snapshot_to_restore(store, reference, aliases, from_any)
    selected = list(dict.fromkeys(aliases)) or list(snapshot.artifacts)
    connectors = {}
    for alias in selected:
        artifact = snapshot.artifacts.get(alias)
        if artifact is None:
            held = ", ".join(snapshot.artifacts)
            raise ConfigurationError(
                f"snapshot {snapshot.name} holds no database '{alias}'; it holds: {held}"
            )
        database_settings(alias)
        loaded = connector_for_restore(alias, artifact)
        vendor = vendor_of(alias)
        if artifact.vendor != vendor and not loaded.capabilities.portable:
            raise IntegrityError(
                f"snapshot {snapshot.name} holds a {artifact.vendor} database for '{alias}', "
                f"which is {vendor} here; restore it into a {artifact.vendor} database"
            )
        check_binaries(artifact.connector, loaded.capabilities)
        add_exclusions(artifact.connector, loaded, exclude)
        unsealer(artifact)  # no identity for it: said now, before anything is read
        connectors[alias] = loaded
    start_apps_for(list(connectors.values()))
    notes = [
        f"snapshot {snapshot.name} was taken of {_described(snapshot.artifacts[alias].database)} "
        f"and is restored into {_described(_identity(alias))} ('{alias}')"
        for alias in _foreign(snapshot, selected)
    ]
    return RestorePlan(snapshot, selected, connectors, notes)


def _identity(alias: str) -> dict[str, str]:
    from snapctl.django_env import database_identity

    return database_identity(alias)


def _described(identity: dict[str, str] | None) -> str:
    if identity is None:
        return "an unrecorded database"
    where = ":".join(part for part in (identity["host"], identity["port"]) if part)
    return f"{identity['vendor']} database '{identity['name']}'" + (f" on {where}" if where else "")


def _foreign(snapshot: Snapshot, aliases: Sequence[str]) -> list[str]:
    """The aliases among ``aliases`` whose database the snapshot was not taken of."""
    from snapctl.django_env import database_aliases

    known = database_aliases()
    return [
        alias
        for alias in aliases or list(snapshot.artifacts)
        if alias in snapshot.artifacts
        and alias in known
        and not snapshot.artifacts[alias].is_of(_identity(alias))
    ]


def of_these_databases(snapshot: Snapshot) -> bool:
    """Whether the snapshot was taken of this project's databases (as the settings now say;
    an older snapshot that records none counts as theirs): what ``prune`` counts in a store
    that other sites share."""
    return not _foreign(snapshot, [])


def _snapshot_to_restore(
    store: SnapshotStore, reference: str | None, aliases: Sequence[str], from_any: bool
) -> Snapshot:
    """The snapshot ``reference`` names. ``latest`` and labels mean the newest snapshot of
    the databases being restored (the settings may point elsewhere than when it was taken:
    two sites sharing a store, an engine switched by an environment variable); a name or
    prefix, or ``--from-any``, takes any snapshot, and the restore then says so."""
    snapshot = store.resolve(reference)
    # Cheapest first: a remote store lists its snapshots anew for means_newest.
    if from_any or not _foreign(snapshot, aliases) or not store.means_newest(reference):
        return snapshot
    found = store.newest(reference, lambda candidate: not _foreign(candidate, aliases))
    if found is None:
        labelled = f" labelled '{reference}'" if reference not in (None, LATEST) else ""
        of = ", ".join(_described(_identity(a)) for a in _foreign(snapshot, aliases))
        raise SnapshotNotFound(
            f"no snapshot{labelled} of {of} in {store.where}; the newest, {snapshot.name}, "
            "is of another database: restore it by name or pass --from-any"
        )
    return found


def restore(
    store: SnapshotStore,
    plan: RestorePlan,
    confirm: Callable[[RestorePlan], None],
    progress: Progress | None = None,
    records: Records | None = None,
) -> list[str]:
    """Verify every artifact of the snapshot, ask ``confirm`` (which raises to stop), then
    restore each selected alias. No database is touched before all checksums match.

    An alias with a ready prepared copy of exactly its artifact has it swapped in instead
    (its checksum and mark are checked); when the one alias restored has one, the snapshot
    is not read at all. Returns the aliases restored so, instantly."""
    from snapctl.django_env import database_settings

    progress = progress or NoProgress()
    if os.access(store.root, os.W_OK):
        store.clean_leftovers()  # what killed dumps and restores left behind
    with contextlib.ExitStack() as held:
        held.enter_context(store.lock(shared=True))
        for alias in plan.aliases:
            held.enter_context(locks.database_lock(alias, database_settings(alias)))
        ready = preparing.ready_copies(
            plan.snapshot, plan.connectors, plan.aliases, progress, records
        )
        # Several databases: the snapshot is verified before any is swapped, so that a copy
        # refused after another went in never leaves them restored by halves unverified.
        if len(plan.aliases) > 1 or ready.keys() != set(plan.aliases):
            return _verify_and_restore(store, plan, confirm, progress, ready, records)
        confirm(plan)
        instant = [
            alias
            for alias in plan.aliases
            if preparing.swap_in(alias, plan.connectors[alias], ready[alias], records)
        ]
        if len(instant) < len(plan.aliases):  # a copy could not be used: load the snapshot
            rest = replace(plan, aliases=[a for a in plan.aliases if a not in instant])
            _verify_and_restore(store, rest, lambda _: None, progress, {}, records)
        return instant


def _verify_and_restore(
    store: SnapshotStore,
    plan: RestorePlan,
    confirm: Callable[[RestorePlan], None],
    progress: Progress,
    ready: dict[str, CopyRecord],
    records: Records | None,
) -> list[str]:
    snapshot = plan.snapshot
    instant = []
    with disk_errors(f"fetching snapshot {snapshot.name}", "no database was touched"):
        store.fetch(snapshot)
    with (
        tempfile.TemporaryDirectory(prefix=scratch_prefix(), dir=scratch_dir(store)) as scratch,
        contextlib.ExitStack() as opened,
    ):
        # What each selected alias restores from: a private copy made while verifying, or,
        # for a connector that follows the unpacking (see unpacking.py), the artifact held
        # open since verified, uncompressed ones too: it then reads the open file it
        # verified (SQLite would open a path, and a link to the open file, by name).
        private: dict[str, Path] = {}
        followed: dict[str, BinaryIO] = {}
        for alias, artifact in snapshot.artifacts.items():
            stored = opened.enter_context(store.open_artifact(snapshot.path / artifact.file))
            problem = size_problem(snapshot, artifact, stored)
            if problem:  # known before a byte is read
                raise IntegrityError(problem)
            if alias in plan.aliases and not plan.connectors[alias].capabilities.follows_unpacking:
                private[alias] = Path(scratch) / unpacked_name(artifact)
                digest = verify_into(private[alias], store, artifact, stored, progress)
            else:
                with progress.track(f"Verifying {alias}", *reading(stored, artifact)):
                    digest = compression.sha256_of(stored)
                if alias in plan.aliases:
                    followed[alias] = stored
            problem = checksum_problem(snapshot, artifact, digest)
            if problem:
                raise IntegrityError(problem)
        for alias, path in private.items():
            call_hook(plan.connectors[alias], "check", alias, path)
        confirm(plan)
        for alias in plan.aliases:
            loaded = plan.connectors[alias]
            if alias in ready and preparing.swap_in(alias, loaded, ready[alias], records):
                instant.append(alias)
                continue
            errors = connector_errors("restore", loaded.capabilities.name, alias)
            if alias in followed:  # its bytes are counted as the unpacking reads them
                artifact, stored = snapshot.artifacts[alias], followed[alias]
                stored.seek(0)
                with progress.track(f"Restoring {alias}", *reading(stored, artifact)), errors:
                    following = cast(RestoresWhileUnpacking, loaded.connector)
                    _restore_following(following, alias, artifact, stored, scratch)
            else:
                with progress.track(f"Restoring {alias}"), errors:
                    loaded.connector.restore(alias, private[alias])
    return instant


def _restore_following(
    connector: RestoresWhileUnpacking,
    alias: str,
    artifact: Artifact,
    stored: BinaryIO,
    scratch: str,
) -> None:
    """Restore while unpacking the open, verified artifact, which is hashed again as it is
    read: whoever can write it cannot change what is restored. What is copied is dropped
    from the scratch file as it goes: no room is needed up front, but the bound holds."""
    unpacked = Path(scratch) / unpacked_name(artifact)
    limit = unpack_limit(artifact, Path(scratch), needs_room=False)
    with Unpacking(
        stored,
        artifact.file,
        unpacked,
        artifact.compression,
        limit,
        artifact.sha256,
        unsealer(artifact),
    ) as unpacking:
        connector.restore_while_unpacking(alias, unpacking)
