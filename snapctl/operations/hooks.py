"""The hooks of connectors that keep data outside the artifact: ``check`` and ``forget``,
called when a snapshot is checked, deleted, restored or not completed."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from snapctl import compression, registry
from snapctl.connectors.api import Hook, KeepsDataOutside
from snapctl.errors import ConfigurationError, SnapctlError
from snapctl.operations.loading import (
    connector_errors,
    connector_for_restore,
    start_apps_for,
    unpack_limit,
    unpacked_name,
    unsealer,
)
from snapctl.store import Artifact, Snapshot, SnapshotStore

# The hooks of connectors that keep data outside the artifact (api.KeepsDataOutside).
HOOKS: tuple[Hook, ...] = ("check", "forget")


def call_hook(loaded: registry.LoadedConnector, hook: Hook, alias: str, src: Path) -> None:
    capabilities = loaded.capabilities
    if capabilities.has_hook(hook):
        outside = cast(KeepsDataOutside, loaded.connector)
        method = outside.check if hook == "check" else outside.forget
        with connector_errors(hook, capabilities.name, alias):
            method(alias, src)


def _has_any_hook(artifact: Artifact, hooks: tuple[Hook, ...]) -> bool:
    """Whether the artifact's connector, found by name without starting Django, has one of
    ``hooks``."""
    try:
        found = registry.resolve(artifact.connector)
    except ConfigurationError:
        return False  # cannot be loaded: restore reports that; nothing to call here
    return found is not None and any(found.capabilities.has_hook(hook) for hook in hooks)


def _hook_owners(snapshot: Snapshot, hook: Hook) -> list[Artifact]:
    """The artifacts whose connector has ``hook``."""
    return [a for a in snapshot.artifacts.values() if _has_any_hook(a, (hook,))]


def needs_project(snapshot: Snapshot) -> bool:
    """Whether checking or deleting this snapshot involves its connectors (and so settings):
    each connector resolved once, for either hook."""
    return any(_has_any_hook(a, HOOKS) for a in snapshot.artifacts.values())


def may_use_settings(snapshot: Snapshot) -> bool:
    """Whether a connector of this snapshot is not installed: the project's settings may
    configure it, with its hooks, under that name."""
    return any(
        artifact.connector not in registry.registered() for artifact in snapshot.artifacts.values()
    )


def _hook_connector(artifact: Artifact) -> registry.LoadedConnector:
    try:
        loaded = connector_for_restore(artifact.alias, artifact)
    except ConfigurationError:
        # The alias may be gone from DATABASES; the connector alone may still do it.
        found = registry.resolve(artifact.connector)
        if found is None:
            raise
        loaded = found.create()
    start_apps_for([loaded])
    return loaded


@contextlib.contextmanager
def _plain(store: SnapshotStore, snapshot: Snapshot, artifact: Artifact) -> Iterator[Path]:
    """The artifact as its connector wrote it, in a private scratch file."""
    with (
        tempfile.TemporaryDirectory(prefix="snapctl-") as scratch,
        store.open_artifact(snapshot.path / artifact.file) as stored,
    ):
        plain = Path(scratch) / unpacked_name(artifact)
        limit = unpack_limit(artifact, Path(scratch), needs_room=True)
        unseal = unsealer(artifact)
        compression.decompress(stored, artifact.file, plain, artifact.compression, limit, unseal)
        yield plain


def external_problems(store: SnapshotStore, snapshot: Snapshot) -> list[str]:
    """What the connectors' ``check`` hooks find wrong with data kept outside the snapshot."""
    store.fetch(snapshot)
    problems = []
    for artifact in _hook_owners(snapshot, "check"):
        try:
            with _plain(store, snapshot, artifact) as plain:
                call_hook(_hook_connector(artifact), "check", artifact.alias, plain)
        except SnapctlError as exc:
            problems.append(f"snapshot {snapshot.name}: {exc}")
    return problems


def forget(store: SnapshotStore, snapshot: Snapshot) -> None:
    """Let connectors release what they keep outside the snapshot, before it is deleted."""
    store.fetch(snapshot)
    for artifact in _hook_owners(snapshot, "forget"):
        with _plain(store, snapshot, artifact) as plain:
            call_hook(_hook_connector(artifact), "forget", artifact.alias, plain)
