"""Values for shell completion: database aliases, snapshot names and connector names.

Completing commands and options needs none of this and never imports Django. These run only
when a value is being completed; any failure (no settings, no store yet) completes nothing
rather than printing into the user's shell.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from snapctl.store import Snapshot, SnapshotStore


def _param(ctx: typer.Context, name: str) -> Any:
    """A parameter given so far on this command or, failing that, before it."""
    current: Any = ctx
    while current is not None:
        value = current.params.get(name)
        if value:
            return value
        current = current.parent
    return None


def _load_settings(ctx: typer.Context) -> None:
    """Settings only, not django.setup(): loading every app would make Tab feel slow."""
    from snapctl.django_env import DjangoOptions, load_settings

    options = DjangoOptions(_param(ctx, "settings"), tuple(_param(ctx, "pythonpath") or ()))
    load_settings(options, logging=False)


def aliases(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        _load_settings(ctx)
        from django.conf import settings

        return [alias for alias in settings.DATABASES if alias.startswith(incomplete)]
    except Exception:
        return []


def snapshots(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Snapshot names, newest first, each with its time and databases as help."""
    try:
        with tempfile.TemporaryDirectory(prefix="snapctl-") as scratch:
            store = _store(ctx, Path(scratch))
            return [
                (value, help)
                for value, help in _references(store.snapshots())
                if value.startswith(incomplete)
            ]
    except Exception:
        return []


def _store(ctx: typer.Context, scratch: Path) -> SnapshotStore:
    """The store the command would use (store/config.py); a remote one reads its manifests
    into ``scratch``."""
    from snapctl.store import choose_store

    directory = _param(ctx, "directory")
    return choose_store(
        Path(directory) if directory else None,
        _param(ctx, "storage"),
        shared_flag=bool(_param(ctx, "shared_store")),
        load_settings=lambda: _load_settings(ctx),
        scratch=lambda: scratch,
    )


def _references(snapshots: list[Snapshot]) -> list[tuple[str, str]]:
    """What a snapshot can be named by: each name (newest first), ``latest`` and each label
    (the newest snapshot carrying it), with what they stand for as help."""
    from snapctl.store import LATEST

    def described(snapshot: Snapshot) -> str:
        return f"{snapshot.created:%Y-%m-%d %H:%M} {', '.join(snapshot.artifacts)}"

    references = [(snapshot.name, described(snapshot)) for snapshot in snapshots]
    if snapshots:
        references.append((LATEST, f"newest: {snapshots[0].name}"))
    labels: dict[str, Snapshot] = {}
    for snapshot in snapshots:  # newest first: the first of each label is what it means
        if snapshot.label:
            labels.setdefault(snapshot.label, snapshot)
    references += [(label, f"newest labelled: {s.name}") for label, s in labels.items()]
    return references


def compressions(incomplete: str) -> list[str]:
    from snapctl.compression import SUFFIXES

    return [method for method in SUFFIXES if method.startswith(incomplete)]


def connectors(incomplete: str) -> list[str]:
    try:
        from snapctl.registry import registered

        return sorted(name for name in registered() if name.startswith(incomplete))
    except Exception:
        return []
