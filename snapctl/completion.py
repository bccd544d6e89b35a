"""Values for shell completion: database aliases, snapshot names and connector names.

Completing commands and options needs none of this and never imports Django. These run only
when a value is being completed; any failure (no settings, no store yet) completes nothing
rather than printing into the user's shell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer


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
        from snapctl.snapshots import SnapshotStore, store_root

        directory = _param(ctx, "directory")
        needs_django = directory is None and not os.environ.get("SNAPCTL_DIR")
        if needs_django:
            _load_settings(ctx)
        store = SnapshotStore(
            store_root(Path(directory) if directory else None, settings_loaded=needs_django),
            shared=_shared_store(ctx, settings_loaded=needs_django),
        )
        return [
            (
                snapshot.name,
                f"{snapshot.created:%Y-%m-%d %H:%M} {', '.join(snapshot.artifacts)}",
            )
            for snapshot in store.snapshots()
            if snapshot.name.startswith(incomplete)
        ]
    except Exception:
        return []


def _shared_store(ctx: typer.Context, *, settings_loaded: bool) -> bool:
    """As the command would take it: --shared-store, or SNAPSHOTS["SHARED_STORE"]."""
    if _param(ctx, "shared_store"):
        return True
    if not settings_loaded:
        return False
    from snapctl.django_env import snapshot_settings

    return bool(snapshot_settings().get("SHARED_STORE", False))


def connectors(incomplete: str) -> list[str]:
    try:
        from snapctl.registry import registered

        return sorted(name for name in registered() if name.startswith(incomplete))
    except Exception:
        return []
