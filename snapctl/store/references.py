"""What a snapshot reference means among a store's names (newest first): a full name, a label
(the newest snapshot carrying it), a unique prefix, or ``latest`` (also the default).

The names are asked for (``listed``) only when needed: a remote store lists them anew."""

from __future__ import annotations

from collections.abc import Callable

from snapctl.errors import SnapshotNotFound
from snapctl.store.names import LATEST, label_of


def resolve_name(listed: Callable[[], list[str]], reference: str | None, where: str) -> str:
    """The name ``reference`` stands for among the names ``listed()`` gives, the snapshots in
    ``where``.

    Only a listed name is ever returned, so a reference cannot reach outside the store.
    """
    if reference is not None and not reference.strip():
        # An unset shell variable gives "", which as a prefix would match everything.
        raise SnapshotNotFound(
            "empty snapshot reference; give a snapshot name, a label, a unique prefix or 'latest'"
        )
    names = listed()
    if reference is None or reference == LATEST:
        if not names:
            raise SnapshotNotFound(f"no snapshots in {where}; take one with 'snapctl dump'")
        # Strictly the newest: a damaged newest snapshot is an error, never a quiet
        # fallback to an older one.
        return names[0]
    if reference in names:
        return reference
    labelled = [name for name in names if label_of(name) == reference]
    if labelled:
        return labelled[0]  # a label means the newest snapshot carrying it
    matches = [name for name in names if name.startswith(reference)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SnapshotNotFound(
            f"snapshot reference '{reference}' is ambiguous; it matches: "
            + ", ".join(sorted(matches))
        )
    raise SnapshotNotFound(
        f"no snapshot '{reference}' in {where}; 'snapctl list' shows what there is"
    )


def means_newest(listed: Callable[[], list[str]], reference: str | None) -> bool:
    """Whether ``reference`` means "the newest of some": ``latest`` (the default) or a
    label; not a snapshot's name nor a prefix of one. The store is listed only if needed."""
    if reference is None or reference == LATEST:
        return True
    names = listed()
    return reference not in names and any(label_of(n) == reference for n in names)


def may_mean(name: str, reference: str | None) -> bool:
    """Whether the snapshot ``name`` is among those ``latest`` or a label may mean."""
    return reference in (None, LATEST) or label_of(name) == reference
