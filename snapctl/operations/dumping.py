"""Dump: choose a connector per alias, call it, and compress and record what it wrote."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from snapctl import compression, registry
from snapctl.connectors.api import DumpsSanitized
from snapctl.encryption import keys
from snapctl.errors import ConfigurationError, OperationFailed
from snapctl.operations import data_exclusions
from snapctl.operations.hooks import call_hook
from snapctl.operations.loading import (
    add_data_exclusions,
    add_exclusions,
    check_binaries,
    connector_errors,
    disk_errors,
    start_apps_for,
    vendor_of,
)
from snapctl.progress import NoProgress, Progress, file_size
from snapctl.store import PendingSnapshot, Snapshot, SnapshotStore

if TYPE_CHECKING:
    from snapctl.sanitizing.applying import Sanitizing

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


def dump(
    store: SnapshotStore,
    aliases: Sequence[str],
    *,
    label: str | None,
    method: str,
    level: int | None = None,
    connector: str | None = None,
    exclude: Sequence[str] = (),
    exclude_data: Sequence[str] = (),
    encrypt_to: Sequence[str] = (),
    progress: Progress | None = None,
    sanitize: bool | None = None,
) -> Snapshot:
    """Dump ``aliases`` into a new snapshot and return it once it is complete; ``exclude``
    names apps or models a connector that takes exclusions (dumpdata) leaves out,
    ``exclude_data`` tables or models whose rows are left out, added to the setting's
    (data_exclusions.py), and ``encrypt_to`` recipients (keys or files of them) added to
    SNAPSHOTS['ENCRYPT_TO']. ``sanitize`` True or False sanitizes every alias or none, None
    those ``SNAPSHOTS["SANITIZE_BY_DEFAULT"]`` lists."""
    import django

    from snapctl import __version__
    from snapctl.sanitizing.planning import sanitizers_for

    compression.check_method(method, level)
    recipients = keys.recipients_for_dump(encrypt_to)
    progress = progress or NoProgress()
    choices = [registry.choose(alias, connector) for alias in aliases]
    for choice in choices:
        check_binaries(choice.name, choice.capabilities)
        add_exclusions(choice.name, choice.loaded, exclude)
        if recipients:
            _check_encryptable(choice)
    start_apps_for([choice.loaded for choice in choices])
    emptied = data_exclusions.resolve([choice.alias for choice in choices], exclude_data)
    for choice in choices:
        add_data_exclusions(choice.name, choice.loaded, emptied.get(choice.alias, ()))
    # The rules, the key and every connector's part checked before anything is written.
    sanitizers = sanitizers_for(aliases, sanitize)
    for choice in choices:
        if choice.alias in sanitizers and not choice.capabilities.dumps_sanitized:
            raise ConfigurationError(
                f"connector '{choice.name}' of '{choice.alias}' cannot dump sanitized copies; "
                "use a connector that can (sqlite, postgres, mysql, dumpdata) or --no-sanitize"
            )
    dumped: list[tuple[registry.Choice, tuple[Path, ...]]] = []
    with (
        store.new_snapshot(label, recipients) as pending,
        disk_errors(f"writing the snapshot in {store.where}", "nothing was kept"),
    ):
        try:
            for choice in choices:
                excluded = emptied.get(choice.alias, ())
                sanitizer = sanitizers.get(choice.alias)
                _dump_one(pending, choice, method, level, progress, dumped, excluded, sanitizer)
            return pending.commit(__version__, django.get_version())
        except BaseException:
            # The snapshot will not exist: release what connectors keep outside it.
            for done, paths in dumped:
                written = next((path for path in paths if path.exists()), paths[-1])
                with contextlib.suppress(Exception):
                    call_hook(done.loaded, "forget", done.alias, written)
            raise


def _dump_one(
    pending: PendingSnapshot,
    choice: registry.Choice,
    method: str,
    level: int | None,
    progress: Progress,
    dumped: list[tuple[registry.Choice, tuple[Path, ...]]],
    excluded_data: tuple[str, ...],
    sanitizer: Sanitizing | None = None,
) -> None:
    """Dump one alias into the pending snapshot (sanitized by ``sanitizer``, if given),
    then compress and record it; the tables of ``excluded_data`` come back empty from it."""
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
        "vendor": vendor_of(choice.alias),
        "excluded_data": excluded_data,
    }
    # Compressed as it arrives, beside the dump, when the connector allows it and the
    # compression keeps up: no second pass over a raw file.
    streamed = choice.capabilities.dump_to_pipe and compression.keeps_up(method, level)
    receiving = pending.receive(raw, method, level) if streamed else contextlib.nullcontext()
    with receiving as received:
        doing = "Sanitizing and dumping" if sanitizer else "Dumping"
        with progress.track(f"{doing} {choice.alias}", file_size(final if received else raw)):
            metadata = _call_dump(choice, received.pipe if received else raw, sanitizer)
        dumped.append((choice, (final,) if received else (final, raw)))
    _check_metadata(choice, metadata)
    if sanitizer is not None:
        fields["sanitized"] = {"rules": sanitizer.applied_rules}
    fields["server_version"] = metadata.get("server_version")
    if received is not None:
        pending.record(
            choice.alias,
            final,
            method,
            received.size,
            received.sha256,
            plaintext_sha256=received.plaintext_sha256,
            unpacked_size=received.unpacked,
            **fields,
            metadata=metadata,
        )
        return
    with progress.track(f"Compressing {choice.alias}", file_size(final)):
        pending.add(choice.alias, raw, method, level, **fields, metadata=metadata)


def _check_encryptable(choice: registry.Choice) -> None:
    """Encryption protects the artifact only: a connector that keeps the data elsewhere (a
    copy on the server) would leave it in the clear, so it is refused."""
    if choice.capabilities.checks or choice.capabilities.forgets:
        raise ConfigurationError(
            f"connector '{choice.name}' keeps the data of '{choice.alias}' outside the "
            "snapshot, where encryption cannot protect it; dump it with another connector "
            "(--connector) to encrypt it"
        )


def _call_dump(choice: registry.Choice, dest: Path, sanitizer: Sanitizing | None) -> dict[str, Any]:
    with connector_errors("dump", choice.name, choice.alias):
        if sanitizer is None:
            metadata = choice.connector.dump(choice.alias, dest)
        else:
            sanitizing = cast(DumpsSanitized, choice.connector)
            metadata = sanitizing.dump_sanitized(choice.alias, dest, sanitizer)
    return metadata if isinstance(metadata, dict) else {}


def _check_metadata(choice: registry.Choice, metadata: dict[str, Any]) -> None:
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise OperationFailed(
            f"connector '{choice.name}' returned metadata that is not JSON: {exc}"
        ) from exc
