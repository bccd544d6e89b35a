"""Which connector serves a database alias.

Highest first:
1. ``SNAPSHOTS["DATABASE_CONNECTORS"][alias]`` in settings: an instance, a class, a dotted
   import path, or a registered connector name;
2. ``--connector NAME`` for this run;
3. a plugin (entry-point group ``snapctl.connectors``) whose ``engines`` match the ENGINE;
4. the built-in ENGINE mapping (registered through the same entry-point group);
5. the dumpdata fallback.

A name becomes a connector in one place, :func:`resolve`; what a connector can do is read
once, by ``connectors.api.capabilities_of``.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import metadata
from typing import Any

from snapctl.connectors.api import (
    Capabilities,
    DatabaseConnector,
    capabilities_of,
    class_path,
    is_connector,
)
from snapctl.errors import ConfigurationError

GROUP = "snapctl.connectors"
BUILTIN_DISTRIBUTION = "django-snapctl"
FALLBACK = "dumpdata"


@dataclass(frozen=True)
class RegisteredConnector:
    """A connector announced through the entry-point group."""

    name: str
    target: str
    distribution: str

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    @property
    def source(self) -> str:
        return "built-in" if self.builtin else f"plugin ({self.distribution})"

    def import_class(self) -> type[Any]:
        try:
            return import_object(self.target)  # type: ignore[no-any-return]
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"connector '{self.name}' from {self.distribution} cannot be loaded: {exc}"
            ) from exc


@dataclass(frozen=True)
class LoadedConnector:
    """A connector instance and its capabilities, read once."""

    connector: DatabaseConnector
    capabilities: Capabilities

    @classmethod
    def of(cls, connector: DatabaseConnector) -> LoadedConnector:
        return cls(connector, capabilities_of(connector))


@dataclass(frozen=True)
class Choice:
    """The connector serving one alias, and why it was chosen."""

    alias: str
    loaded: LoadedConnector
    name: str
    source: str
    reason: str

    @property
    def connector(self) -> DatabaseConnector:
        return self.loaded.connector

    @property
    def capabilities(self) -> Capabilities:
        return self.loaded.capabilities

    @property
    def class_path(self) -> str:
        return class_path(self.connector)


def _with_apps(make: Callable[[], Any]) -> Any:
    """``make()``, and if it needs models (code written for the reference API, where Django
    was always set up first), again once the app registry is populated."""
    from django.core.exceptions import AppRegistryNotReady

    try:
        return make()
    except AppRegistryNotReady:
        from snapctl.django_env import require_apps

        require_apps()
        return make()


def import_object(path: str) -> Any:
    """Import ``module:attr`` or ``module.attr``; a module that uses models when imported
    gets the app registry first (see :func:`_with_apps`)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(f"'{path}' is not an import path like 'package.module.Class'")
    try:
        obj: Any = _with_apps(lambda: importlib.import_module(module_name))
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import '{path}': {exc}") from exc
    return obj


@cache
def registered() -> dict[str, RegisteredConnector]:
    """Every connector announced by an installed distribution, by name.

    Two distributions announcing one name is an error naming both, never a silent pick.
    """
    found: dict[str, RegisteredConnector] = {}
    for entry in metadata.entry_points(group=GROUP):
        dist = entry.dist.name if entry.dist is not None else "unknown distribution"
        candidate = RegisteredConnector(entry.name, entry.value, dist)
        previous = found.get(entry.name)
        if previous is not None and previous != candidate:
            first, second = sorted([previous.distribution, candidate.distribution])
            raise ConfigurationError(
                f"two installed distributions register a connector named '{entry.name}': "
                f"{first} and {second}; uninstall one of them"
            )
        found[entry.name] = candidate
    if FALLBACK not in found:
        raise ConfigurationError(
            "snapctl's built-in connectors are not registered; reinstall django-snapctl"
        )
    return found


def engines_of(connector: object) -> tuple[str, ...]:
    return capabilities_of(connector).engines


def missing_binaries(capabilities: Capabilities) -> list[str]:
    """The programs a connector needs that are not on PATH (``a|b`` means either)."""
    missing = []
    for spec in capabilities.binaries:
        if not any(shutil.which(name) for name in spec.split("|")):
            missing.append(spec.replace("|", " or "))
    return missing


def instantiate(obj: Any, what: str) -> DatabaseConnector:
    """An instance of a connector class (or the instance given), checked for the protocol.
    A class that uses models when created gets the app registry first (see _with_apps)."""
    if isinstance(obj, type):
        cls = obj
        try:
            obj = _with_apps(cls)
        except Exception as exc:
            raise ConfigurationError(f"{what}: cannot create {cls.__name__}(): {exc}") from exc
    if not is_connector(obj):
        raise ConfigurationError(f"{what}: {obj!r} has no dump() and restore() methods")
    return obj


def _from_setting(value: Any, alias: str) -> tuple[LoadedConnector, str]:
    """The connector ``SNAPSHOTS["DATABASE_CONNECTORS"]`` sets for ``alias``, and its name."""
    what = f"SNAPSHOTS['DATABASE_CONNECTORS']['{alias}']"
    if isinstance(value, str):
        found = resolve(value, in_settings=False)
        if found is not None:
            return LoadedConnector.of(instantiate(found.target, what)), found.name
        value = import_object(value)
    loaded = LoadedConnector.of(instantiate(value, what))
    return loaded, loaded.capabilities.name


def settings_overrides() -> dict[str, Any]:
    from snapctl.django_env import snapshot_settings

    snapshots = snapshot_settings()
    # The reference text spells it in lower case (SNAPSHOTS.database_connectors): both work.
    overrides = snapshots.get("DATABASE_CONNECTORS", snapshots.get("database_connectors", {}))
    if not isinstance(overrides, dict):
        raise ConfigurationError("SNAPSHOTS['DATABASE_CONNECTORS'] must be a dict of aliases")
    return overrides


@dataclass(frozen=True)
class Found:
    """A connector found by its name: an installed class, or a configured instance."""

    target: Any  # the class (installed) or the instance (configured in the settings)
    name: str
    entry: RegisteredConnector | None  # None: configured in the settings

    @property
    def source(self) -> str:
        return self.entry.source if self.entry is not None else "settings"

    @cached_property
    def capabilities(self) -> Capabilities:
        return capabilities_of(self.target)

    def create(self) -> LoadedConnector:
        """An instance (of the class found), with its capabilities."""
        return LoadedConnector.of(instantiate(self.target, f"connector '{self.name}'"))


def resolve(name: str, *, in_settings: bool = True) -> Found | None:
    """The connector called ``name``: an installed one, else (``in_settings``) one the
    project's settings configure (when they are loaded), else None. The one place a name
    becomes a connector, and the only way: a snapshot's manifest is input from outside, and
    the import path it records is never imported."""
    entry = registered().get(name)
    if entry is not None:
        return Found(entry.import_class(), entry.name, entry)
    if not in_settings:
        return None
    from snapctl.django_env import settings_loaded

    if settings_loaded():
        for alias, value in settings_overrides().items():
            loaded, configured_name = _from_setting(value, str(alias))
            if configured_name == name:
                return Found(loaded.connector, name, None)
    return None


def by_name(name: str) -> Found:
    """The installed connector called ``name`` (``--connector``), or a usage error."""
    found = resolve(name, in_settings=False)
    if found is None:
        known = ", ".join(sorted(registered()))
        raise ConfigurationError(f"unknown connector '{name}'; installed connectors: {known}")
    return found


# The ENGINE fragments snapctl's own connectors claim, known without importing them: finding
# the connector of an alias then imports that one module, not all five (20 ms together).
# tests/test_registry.py keeps this equal to the classes' ``engines``.
BUILTIN_ENGINES: dict[str, tuple[str, ...]] = {
    "sqlite": ("sqlite3",),
    "postgres": ("postgresql", "postgis"),
    "mysql": ("mysql",),
    "dumpdata": (),
    "postgres-template": (),
}


def _claims(entry: RegisteredConnector) -> tuple[str, ...]:
    if entry.builtin and entry.name in BUILTIN_ENGINES:
        return BUILTIN_ENGINES[entry.name]
    return engines_of(entry.import_class())


def name_for_engine(engine: str) -> tuple[str, str]:
    """The name of the connector serving ``engine`` by steps 3-5, and the reason."""
    entries = sorted(registered().values(), key=lambda e: e.name)
    for want_builtin, reason in ((False, "plugin"), (True, "engine")):
        matches = [
            entry
            for entry in entries
            if entry.builtin == want_builtin
            and any(fragment in engine for fragment in _claims(entry))
        ]
        if len(matches) > 1:
            names = ", ".join(f"'{e.name}' ({e.distribution})" for e in matches)
            raise ConfigurationError(
                f"several connectors claim ENGINE '{engine}': {names}; choose one in "
                "SNAPSHOTS['DATABASE_CONNECTORS']"
            )
        if matches:
            return matches[0].name, reason
    return FALLBACK, "fallback"


def class_for_engine(engine: str) -> type[Any]:
    """The class serving ``engine`` by steps 3-5."""
    found = by_name(name_for_engine(engine)[0])
    return found.target  # type: ignore[no-any-return]


def choose(alias: str, requested: str | None = None) -> Choice:
    """The connector for ``alias``: settings override, then ``requested``, then by ENGINE."""
    from snapctl.django_env import database_settings

    engine = str(database_settings(alias).get("ENGINE", ""))
    overrides = settings_overrides()
    if alias in overrides:
        loaded, name = _from_setting(overrides[alias], alias)
        return Choice(alias, loaded, name, "settings", "settings")
    if requested:
        found, reason = by_name(requested), "--connector"
    else:
        name, reason = name_for_engine(engine)
        found = by_name(name)
    return Choice(alias, found.create(), found.name, found.source, reason)
