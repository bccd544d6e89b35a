"""Verify, delete and prune: looking after the store.

A snapshot whose connector keeps data outside its files (``check`` and ``forget`` hooks, see
connectors/api.py) needs the project's settings to reach that data, so these take a
``load_settings`` callable and load them only when a snapshot's connectors may need them.
Nothing here prints; the command line renders what these return.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from snapctl import operations
from snapctl.errors import ConfigurationError, SnapctlError, SnapshotNotFound
from snapctl.progress import NoProgress, Progress
from snapctl.store import Snapshot, SnapshotStore

LoadSettings = Callable[[], None]


def names_to_verify(store: SnapshotStore, reference: str | None, every: bool) -> list[str]:
    """The snapshot ``reference`` names (the newest by default), or ``every`` one."""
    names = store.names() if every else [store.resolve_name(reference)]
    if not names:  # nothing checked is not "all checksums match"
        raise SnapshotNotFound(f"no snapshots in {store.where}; nothing to verify")
    return names


def verify(
    store: SnapshotStore,
    names: list[str],
    load_settings: LoadSettings,
    progress: Progress | None = None,
) -> dict[str, list[str]]:
    """Each snapshot's problems (none: every checksum matches, and what its connectors keep
    elsewhere is there), by name."""
    progress = progress or NoProgress()
    results = {}
    for name in names:
        with progress.track(f"Verifying {name}"):
            results[name] = store.verify(name) or _external_problems(store, name, load_settings)
    return results


def delete(store: SnapshotStore, names: list[str], load_settings: LoadSettings) -> None:
    """Delete snapshots, letting their connectors release what they keep elsewhere first;
    a snapshot whose connector fails to release stays."""

    def release(name: str) -> None:
        try:
            snapshot = store.load(name)
        except SnapctlError:
            return  # a broken manifest names nothing to release
        if _settings_for_hooks(snapshot, load_settings):
            operations.forget(store, snapshot)
        _drop_prepared_copies(snapshot, load_settings)

    store.delete(names, before=release)


def _drop_prepared_copies(snapshot: Snapshot, load_settings: LoadSettings) -> None:
    """Drop the copies prepared of a snapshot that goes; they need the settings to reach
    their servers. What cannot be dropped is said, and the snapshot still goes."""
    from snapctl.notices import notice
    from snapctl.operations import preparing
    from snapctl.prepared_copies import Records

    try:
        records = Records()
        if not preparing.copies_of(snapshot, records.all()):
            return
        load_settings()
        problems = preparing.drop_copies_of(snapshot, records)
    except SnapctlError as exc:
        problems = [f"could not drop the prepared copies of {snapshot.name}: {exc}"]
    for problem in problems:
        notice(problem)


def prune_candidates(
    store: SnapshotStore,
    keep: int,
    alias: str | None,
    *,
    any_database: bool,
    load_settings: LoadSettings,
) -> list[str]:
    """The snapshots ``prune`` deletes: all but the newest ``keep`` (of those holding
    ``alias``). Another site's snapshots in a shared store are not this project's to prune:
    which databases are the project's, its settings say, when they can be found (``--dir``
    alone needs none: then every snapshot counts), unless ``any_database``."""
    from snapctl import django_env

    if not any_database and not django_env.settings_loaded():
        with contextlib.suppress(SnapctlError):
            load_settings()
    ours = not any_database and django_env.settings_loaded()
    accept = operations.of_these_databases if ours else (lambda snapshot: True)
    return [snapshot.name for snapshot in store.prune_plan(keep, alias, accept)]


def _external_problems(store: SnapshotStore, name: str, load_settings: LoadSettings) -> list[str]:
    """What connectors find wrong with data a snapshot keeps outside its files."""
    snapshot = store.load(name)
    try:
        if not _settings_for_hooks(snapshot, load_settings):
            return []
    except ConfigurationError as exc:
        return [f"snapshot {name}: its server-side data cannot be checked: {exc}"]
    return operations.external_problems(store, snapshot)


def _settings_for_hooks(snapshot: Snapshot, load_settings: LoadSettings) -> bool:
    """Load the settings if the snapshot's connectors may keep data elsewhere: an installed
    one that has hooks (then settings that cannot be loaded are an error), or one not
    installed, which the settings may configure by that name (without settings there is
    nothing to find). Returns whether hooks may apply."""
    if operations.needs_project(snapshot):
        load_settings()
        return True
    if not operations.may_use_settings(snapshot):
        return False
    try:
        load_settings()
    except ConfigurationError:
        return False
    return True
