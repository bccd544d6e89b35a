"""Dump and restore, end to end: choose connectors, write or verify snapshots, call them.

Nothing here prints or exits; the command line does that with what these return or raise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from snapctl import compression, locks, registry
from snapctl.connectors.api import (
    Capabilities,
    Hook,
    KeepsDataOutside,
    RestoresWhileUnpacking,
    TakesExclusions,
)
from snapctl.errors import (
    ConfigurationError,
    IntegrityError,
    OperationFailed,
    SnapctlError,
    SnapshotNotFound,
)
from snapctl.progress import NoProgress, Progress, file_size, read_position
from snapctl.store import (
    LATEST,
    Artifact,
    PendingSnapshot,
    Snapshot,
    SnapshotStore,
    checksum_problem,
    scratch_prefix,
    size_problem,
)
from snapctl.unpacking import Unpacking

DEFAULT_ALIAS = "default"


def select_aliases(requested: Sequence[str], all_aliases: bool) -> list[str]:
    """The aliases a dump covers: those named, all of DATABASES, or ``default``."""
    from snapctl.django_env import database_aliases, database_settings

    if all_aliases:
        if requested:
            raise ConfigurationError("use either --alias or --all, not both")
        return database_aliases()
    aliases = list(dict.fromkeys(requested)) or [DEFAULT_ALIAS]
    for alias in aliases:
        database_settings(alias)  # an unknown alias fails here, before any work
    return aliases


def _vendor(alias: str) -> str:
    from snapctl.django_env import database_vendor

    return database_vendor(alias)


def _start_apps_for(connectors: Sequence[registry.LoadedConnector]) -> None:
    """Populate Django's app registry if any of ``connectors`` needs models; the built-in
    SQLite, PostgreSQL and MySQL connectors read only the settings."""
    if any(loaded.capabilities.needs_app_registry for loaded in connectors):
        from snapctl.django_env import require_apps

        require_apps()


def _add_exclusions(name: str, loaded: registry.LoadedConnector, exclude: Sequence[str]) -> None:
    """``--exclude`` for a connector that takes exclusions (its ``exclude`` attribute)."""
    if not exclude:
        return
    if not loaded.capabilities.takes_exclusions:
        raise ConfigurationError(
            f"connector '{name}' takes no exclusions; --exclude is for the dumpdata connector"
        )
    taking = cast(TakesExclusions, loaded.connector)
    taking.exclude = (*taking.exclude, *exclude)


def _check_binaries(choice_name: str, capabilities: Capabilities) -> None:
    missing = registry.missing_binaries(capabilities)
    if missing:
        raise ConfigurationError(
            f"connector '{choice_name}' needs {', '.join(missing)} on PATH; install the "
            "database's client tools"
        )


@contextlib.contextmanager
def _connector_errors(action: str, connector: str, alias: str) -> Iterator[None]:
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
def _disk_errors(doing: str, outcome: str) -> Iterator[None]:
    """A full disk or a file-size limit is a failed operation with one clear line."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError) or exc.strerror is None:
            raise
        raise OperationFailed(f"{doing} failed: {exc.strerror}; {outcome}") from exc


def dump(
    store: SnapshotStore,
    aliases: Sequence[str],
    *,
    label: str | None,
    method: str,
    level: int | None = None,
    connector: str | None = None,
    exclude: Sequence[str] = (),
    progress: Progress | None = None,
) -> Snapshot:
    """Dump ``aliases`` into a new snapshot and return it once it is complete; ``exclude``
    names apps or models a connector that takes exclusions (dumpdata) leaves out."""
    import django

    from snapctl import __version__

    compression.check_method(method, level)
    progress = progress or NoProgress()
    choices = [registry.choose(alias, connector) for alias in aliases]
    for choice in choices:
        _check_binaries(choice.name, choice.capabilities)
        _add_exclusions(choice.name, choice.loaded, exclude)
    _start_apps_for([choice.loaded for choice in choices])
    dumped: list[tuple[registry.Choice, tuple[Path, ...]]] = []
    with (
        store.new_snapshot(label) as pending,
        _disk_errors(f"writing the snapshot in {store.where}", "nothing was kept"),
    ):
        try:
            for choice in choices:
                _dump_one(pending, choice, method, level, progress, dumped)
            return pending.commit(__version__, django.get_version())
        except BaseException:
            # The snapshot will not exist: release what connectors keep outside it.
            for done, paths in dumped:
                written = next((path for path in paths if path.exists()), paths[-1])
                with contextlib.suppress(Exception):
                    _call_hook(done.loaded, "forget", done.alias, written)
            raise


def _dump_one(
    pending: PendingSnapshot,
    choice: registry.Choice,
    method: str,
    level: int | None,
    progress: Progress,
    dumped: list[tuple[registry.Choice, tuple[Path, ...]]],
) -> None:
    """Dump one alias into the pending snapshot, then compress and record it."""
    from snapctl.django_env import database_settings

    extension = choice.capabilities.extension
    raw = pending.scratch_path(choice.alias, extension)
    final = pending.final_path(raw, method)
    from snapctl.django_env import database_identity

    fields: dict[str, Any] = {
        "database": database_identity(choice.alias),
        "connector": choice.name,
        "connector_source": choice.source,
        "connector_class": choice.class_path,
        "engine": str(database_settings(choice.alias).get("ENGINE", "")),
        "vendor": _vendor(choice.alias),
    }
    # Compressed as it arrives, beside the dump, when the connector allows it and the
    # compression keeps up: no second pass over a raw file.
    streamed = choice.capabilities.dump_to_pipe and compression.keeps_up(method, level)
    receiving = pending.receive(raw, method, level) if streamed else contextlib.nullcontext()
    with receiving as received:
        with progress.track(f"Dumping {choice.alias}", file_size(final if received else raw)):
            metadata = _call_dump(choice, received.pipe if received else raw)
        dumped.append((choice, (final,) if received else (final, raw)))
    _check_metadata(choice, metadata)
    fields["server_version"] = metadata.get("server_version")
    if received is not None:
        pending.record(
            choice.alias,
            final,
            method,
            received.size,
            received.sha256,
            unpacked_size=received.unpacked,
            **fields,
            metadata=metadata,
        )
        return
    with progress.track(f"Compressing {choice.alias}", file_size(final)):
        pending.add(choice.alias, raw, method, level, **fields, metadata=metadata)


def _call_dump(choice: registry.Choice, dest: Path) -> dict[str, Any]:
    with _connector_errors("dump", choice.name, choice.alias):
        metadata = choice.connector.dump(choice.alias, dest)
    return metadata if isinstance(metadata, dict) else {}


def _check_metadata(choice: registry.Choice, metadata: dict[str, Any]) -> None:
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise OperationFailed(
            f"connector '{choice.name}' returned metadata that is not JSON: {exc}"
        ) from exc


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
    return found.load()


# The hooks of connectors that keep data outside the artifact (api.KeepsDataOutside).
HOOKS: tuple[Hook, ...] = ("check", "forget")


def _call_hook(loaded: registry.LoadedConnector, hook: Hook, alias: str, src: Path) -> None:
    capabilities = loaded.capabilities
    if capabilities.has_hook(hook):
        outside = cast(KeepsDataOutside, loaded.connector)
        method = outside.check if hook == "check" else outside.forget
        with _connector_errors(hook, capabilities.name, alias):
            method(alias, src)


def _hook_owners(snapshot: Snapshot, hook: Hook) -> list[Artifact]:
    """The artifacts whose connector has ``hook``, found by name, without starting Django."""
    owners = []
    for artifact in snapshot.artifacts.values():
        try:
            found = registry.resolve(artifact.connector)
            if found is not None and found.capabilities.has_hook(hook):
                owners.append(artifact)
        except ConfigurationError:
            continue  # cannot be loaded: restore reports that; nothing to call here
    return owners


def needs_project(snapshot: Snapshot) -> bool:
    """Whether checking or deleting this snapshot involves its connectors (and so settings)."""
    return any(_hook_owners(snapshot, hook) for hook in HOOKS)


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
        loaded = found.load()
    _start_apps_for([loaded])
    return loaded


@contextlib.contextmanager
def _plain(store: SnapshotStore, snapshot: Snapshot, artifact: Artifact) -> Iterator[Path]:
    """The artifact as its connector wrote it, in a private scratch file."""
    with (
        tempfile.TemporaryDirectory(prefix="snapctl-") as scratch,
        store.open_artifact(snapshot.path / artifact.file) as stored,
    ):
        plain = Path(scratch) / _unpacked_name(artifact)
        limit = _unpack_limit(artifact, Path(scratch), needs_room=True)
        compression.decompress(stored, artifact.file, plain, artifact.compression, limit)
        yield plain


def external_problems(store: SnapshotStore, snapshot: Snapshot) -> list[str]:
    """What the connectors' ``check`` hooks find wrong with data kept outside the snapshot."""
    store.fetch(snapshot)
    problems = []
    for artifact in _hook_owners(snapshot, "check"):
        try:
            with _plain(store, snapshot, artifact) as plain:
                _call_hook(_hook_connector(artifact), "check", artifact.alias, plain)
        except SnapctlError as exc:
            problems.append(f"snapshot {snapshot.name}: {exc}")
    return problems


def forget(store: SnapshotStore, snapshot: Snapshot) -> None:
    """Let connectors release what they keep outside the snapshot, before it is deleted."""
    store.fetch(snapshot)
    for artifact in _hook_owners(snapshot, "forget"):
        with _plain(store, snapshot, artifact) as plain:
            _call_hook(_hook_connector(artifact), "forget", artifact.alias, plain)


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
        vendor = _vendor(alias)
        if artifact.vendor != vendor and not loaded.capabilities.portable:
            raise IntegrityError(
                f"snapshot {snapshot.name} holds a {artifact.vendor} database for '{alias}', "
                f"which is {vendor} here; restore it into a {artifact.vendor} database"
            )
        _check_binaries(artifact.connector, loaded.capabilities)
        _add_exclusions(artifact.connector, loaded, exclude)
        connectors[alias] = loaded
    _start_apps_for(list(connectors.values()))
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


def _scratch_dir(store: SnapshotStore) -> str | None:
    """Unpack next to the snapshots (same disk, sized for dumps) when that is writable and
    the user's alone; in a shared store, where others could rename the scratch directory
    and plant links in its place, in the private temporary directory instead."""
    if store.shared or not os.access(store.root, os.W_OK):
        return None
    return str(store.root)


def restore(
    store: SnapshotStore,
    plan: RestorePlan,
    confirm: Callable[[RestorePlan], None],
    progress: Progress | None = None,
) -> None:
    """Verify every artifact of the snapshot, ask ``confirm`` (which raises to stop), then
    restore each selected alias. No database is touched before all checksums match."""
    from snapctl.django_env import database_settings

    progress = progress or NoProgress()
    if os.access(store.root, os.W_OK):
        store.clean_leftovers()  # what killed dumps and restores left behind
    with contextlib.ExitStack() as held:
        held.enter_context(store.lock(shared=True))
        for alias in plan.aliases:
            held.enter_context(locks.database_lock(alias, database_settings(alias)))
        _verify_and_restore(store, plan, confirm, progress)


def _verify_and_restore(
    store: SnapshotStore,
    plan: RestorePlan,
    confirm: Callable[[RestorePlan], None],
    progress: Progress,
) -> None:
    snapshot = plan.snapshot
    with _disk_errors(f"fetching snapshot {snapshot.name}", "no database was touched"):
        store.fetch(snapshot)
    with (
        tempfile.TemporaryDirectory(prefix=scratch_prefix(), dir=_scratch_dir(store)) as scratch,
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
                private[alias] = Path(scratch) / _unpacked_name(artifact)
                digest = _verify_into(private[alias], store, artifact, stored, progress)
            else:
                with progress.track(f"Verifying {alias}", *_reading(stored, artifact)):
                    digest = compression.sha256_of(stored)
                if alias in plan.aliases:
                    followed[alias] = stored
            problem = checksum_problem(snapshot, artifact, digest)
            if problem:
                raise IntegrityError(problem)
        for alias, path in private.items():
            _call_hook(plan.connectors[alias], "check", alias, path)
        confirm(plan)
        for alias in plan.aliases:
            loaded = plan.connectors[alias]
            errors = _connector_errors("restore", loaded.capabilities.name, alias)
            if alias in followed:  # its bytes are counted as the unpacking reads them
                artifact, stored = snapshot.artifacts[alias], followed[alias]
                stored.seek(0)
                with progress.track(f"Restoring {alias}", *_reading(stored, artifact)), errors:
                    following = cast(RestoresWhileUnpacking, loaded.connector)
                    _restore_following(following, alias, artifact, stored, scratch)
            else:
                with progress.track(f"Restoring {alias}"), errors:
                    loaded.connector.restore(alias, private[alias])


def _verify_into(
    private: Path, store: SnapshotStore, artifact: Artifact, stored: BinaryIO, progress: Progress
) -> str:
    """Hash the open artifact ``stored`` while giving its content the private name
    ``private``, unpacked, for its connector to restore from; the sha256 read. A link to the
    open file where nobody else can write it and it needs no unpacking, else a copy made
    while hashing."""
    if artifact.compression == "none" and store.link_privately(stored, private):
        with progress.track(f"Verifying {artifact.alias}", *_reading(stored, artifact)):
            return compression.sha256_of(stored)
    limit = _unpack_limit(artifact, private.parent, needs_room=True)
    with (
        progress.track(f"Verifying {artifact.alias}", *_reading(stored, artifact)),
        _disk_errors(f"unpacking {artifact.file}", "no database was touched"),
    ):
        return compression.decompress(stored, artifact.file, private, artifact.compression, limit)


def _reading(stored: BinaryIO, artifact: Artifact) -> tuple[Callable[[], int], int]:
    """Progress of reading an artifact through: how far, of how much."""
    return read_position(stored.fileno()), artifact.size


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
    unpacked = Path(scratch) / _unpacked_name(artifact)
    limit = _unpack_limit(artifact, Path(scratch), needs_room=False)
    with Unpacking(
        stored, artifact.file, unpacked, artifact.compression, limit, artifact.sha256
    ) as unpacking:
        connector.restore_while_unpacking(alias, unpacking)


def _unpacked_name(artifact: Artifact) -> str:
    """The artifact's file name without its compression suffix: connectors read the
    format from it (``default.sql``)."""
    suffix = compression.SUFFIXES[artifact.compression]
    return artifact.file.removesuffix(suffix) if suffix else artifact.file


def _unpack_limit(artifact: Artifact, scratch: Path, *, needs_room: bool) -> int:
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
