"""What ``snapctl list-connectors`` shows: every connector, its origin, and what it serves."""

from __future__ import annotations

from dataclasses import dataclass, field

from snapctl import registry
from snapctl.connectors.api import capabilities_of, class_path


@dataclass
class ConnectorRow:
    name: str
    source: str
    distribution: str | None
    class_path: str
    engines: tuple[str, ...]
    binaries: tuple[str, ...]
    missing_binaries: list[str]
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> why it serves it


def _row(name: str, source: str, dist: str | None, obj: object) -> ConnectorRow:
    capabilities = capabilities_of(obj)
    return ConnectorRow(
        name=name,
        source=source,
        distribution=dist,
        class_path=class_path(obj),
        engines=capabilities.engines,
        binaries=capabilities.binaries,
        missing_binaries=registry.missing_binaries(capabilities),
    )


def rows() -> list[ConnectorRow]:
    """Registered connectors (built-ins first), then settings overrides, with their aliases."""
    from snapctl.django_env import database_aliases

    entries = sorted(registry.registered().values(), key=lambda e: (not e.builtin, e.name))
    listing = {e.name: _row(e.name, e.source, e.distribution, e.import_class()) for e in entries}
    for alias in database_aliases():
        choice = registry.choose(alias)
        key = choice.name if choice.source != "settings" else f"settings:{choice.name}"
        if key not in listing:
            listing[key] = _row(choice.name, "settings", None, choice.connector)
        listing[key].aliases[alias] = choice.reason
    return list(listing.values())
