"""Which connector serves a database alias.

Highest first:
1. ``SNAPSHOTS["DATABASE_CONNECTORS"][alias]`` in settings: an instance, a class, a dotted
   import path, or a registered connector name;
2. ``--connector NAME`` for this run;
3. a plugin (entry-point group ``snapctl.connectors``) whose ``engines`` match the ENGINE;
4. the built-in ENGINE mapping (registered through the same entry-point group);
5. the dumpdata fallback.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

from snapctl.connectors.protocols import DatabaseConnector
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

    def load(self) -> type[Any]:
        try:
            return import_object(self.target)  # type: ignore[no-any-return]
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"connector '{self.name}' from {self.distribution} cannot be loaded: {exc}"
            ) from exc


@dataclass(frozen=True)
class Choice:
    """The connector serving one alias, and why it was chosen."""

    alias: str
    connector: DatabaseConnector
    name: str
    source: str
    reason: str

    @property
    def class_path(self) -> str:
        cls = type(self.connector)
        return f"{cls.__module__}:{cls.__qualname__}"


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


def connector_name(connector: object) -> str:
    cls = connector if isinstance(connector, type) else type(connector)
    return str(getattr(cls, "name", None) or cls.__name__)


def needs_app_registry(connector: object) -> bool:
    """Whether the connector needs Django's app registry (models) before it runs. Only a
    connector that says ``needs_app_registry = False`` does without: one written for the
    reference API expects ``django.setup()`` to have run."""
    return bool(getattr(connector, "needs_app_registry", True))


def engines_of(connector: object) -> tuple[str, ...]:
    return tuple(getattr(connector, "engines", ()) or ())


def missing_binaries(connector: object) -> list[str]:
    """The programs a connector needs that are not on PATH (``a|b`` means either)."""
    missing = []
    for spec in getattr(connector, "binaries", ()) or ():
        if not any(shutil.which(name) for name in str(spec).split("|")):
            missing.append(str(spec).replace("|", " or "))
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
    if not (callable(getattr(obj, "dump", None)) and callable(getattr(obj, "restore", None))):
        raise ConfigurationError(f"{what}: {obj!r} has no dump() and restore() methods")
    return obj  # type: ignore[no-any-return]


def _from_setting(value: Any, alias: str) -> tuple[DatabaseConnector, str]:
    what = f"SNAPSHOTS['DATABASE_CONNECTORS']['{alias}']"
    if isinstance(value, str):
        entry = registered().get(value)
        if entry is not None:
            return instantiate(entry.load(), what), entry.name
        value = import_object(value)
    connector = instantiate(value, what)
    return connector, connector_name(connector)


def settings_overrides() -> dict[str, Any]:
    from snapctl.django_env import snapshot_settings

    snapshots = snapshot_settings()
    overrides = snapshots.get("DATABASE_CONNECTORS", snapshots.get("database_connectors", {}))
    if not isinstance(overrides, dict):
        raise ConfigurationError("SNAPSHOTS['DATABASE_CONNECTORS'] must be a dict of aliases")
    return overrides


def find(name: str) -> Any | None:
    """The connector (class or instance) called ``name``: an installed one, else one the
    project's settings configure (when they are loaded), else None. Only ever by name: a
    snapshot's manifest is input from outside, and the import path it records is never
    imported."""
    entry = registered().get(name)
    if entry is not None:
        return entry.load()
    from snapctl.django_env import settings_loaded

    if settings_loaded():
        for alias, value in settings_overrides().items():
            connector, configured_name = _from_setting(value, str(alias))
            if configured_name == name:
                return connector
    return None


def by_name(name: str) -> tuple[DatabaseConnector, RegisteredConnector]:
    entry = registered().get(name)
    if entry is None:
        known = ", ".join(sorted(registered()))
        raise ConfigurationError(f"unknown connector '{name}'; installed connectors: {known}")
    return instantiate(entry.load(), f"connector '{name}'"), entry


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
    return engines_of(entry.load())


def class_for_engine(engine: str) -> tuple[type[Any], RegisteredConnector, str]:
    """The class serving ``engine`` by steps 3-5, with its entry and the reason."""
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
            return matches[0].load(), matches[0], reason
    fallback = registered()[FALLBACK]
    return fallback.load(), fallback, "fallback"


def choose(alias: str, requested: str | None = None) -> Choice:
    """The connector for ``alias``: settings override, then ``requested``, then by ENGINE."""
    from snapctl.django_env import database_settings

    engine = str(database_settings(alias).get("ENGINE", ""))
    overrides = settings_overrides()
    if alias in overrides:
        connector, name = _from_setting(overrides[alias], alias)
        return Choice(alias, connector, name, "settings", "settings")
    if requested:
        connector, entry = by_name(requested)
        return Choice(alias, connector, entry.name, entry.source, "--connector")
    cls, entry, reason = class_for_engine(engine)
    return Choice(
        alias, instantiate(cls, f"connector '{entry.name}'"), entry.name, entry.source, reason
    )
