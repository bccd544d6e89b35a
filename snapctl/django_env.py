"""Finding the project's settings and starting Django, only for the commands that need it.

The current directory is importable, as with ``manage.py``. When neither ``--settings`` nor
``DJANGO_SETTINGS_MODULE`` names the settings, the ``manage.py`` in the current directory is
read for the module it would use, so ``snapctl dump`` works from a project's top directory.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapctl.errors import ConfigurationError

_MANAGE_PY_SETTINGS = re.compile(r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([A-Za-z_][\w.]*)["']""")


@dataclass(frozen=True)
class DjangoOptions:
    """What the command line said about where the project is."""

    settings: str | None = None
    pythonpath: tuple[str, ...] = ()


_DEFAULT_LOGGING_CONFIG = "logging.config.dictConfig"

# What this process has started: the settings module loaded, logging, the app registry.
_loaded: str | None = None
_logging_configured = False
_apps_ready = False


def settings_module_from_manage_py(directory: Path) -> str | None:
    """The settings module a ``manage.py`` in ``directory`` would set, if it says so plainly."""
    manage = directory / "manage.py"
    try:
        match = _MANAGE_PY_SETTINGS.search(manage.read_text(encoding="utf-8"))
    except OSError:
        return None
    return match.group(1) if match else None


def _import_settings(module_name: str) -> None:
    """Import the settings module ourselves first, to tell a missing one from a broken one."""
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigurationError(
                f"settings module '{module_name}' not found; check --settings or "
                "DJANGO_SETTINGS_MODULE, and add the project directory with --pythonpath"
            ) from exc
        raise ConfigurationError(
            f"settings module '{module_name}' failed to import: it needs module '{missing}', "
            "which is not installed in this environment"
        ) from exc
    except Exception as exc:
        where = ""
        if isinstance(exc, SyntaxError) and exc.lineno:
            where = f" (line {exc.lineno})"
        raise ConfigurationError(
            f"settings module '{module_name}' failed to import: "
            f"{type(exc).__name__}: {exc}{where}; fix the settings file"
        ) from exc


def _locate_settings(options: DjangoOptions) -> str:
    """Make the project importable and name its settings module."""
    for entry in reversed(options.pythonpath):
        path = str(Path(entry).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module_name = (
        options.settings
        or os.environ.get("DJANGO_SETTINGS_MODULE")
        or settings_module_from_manage_py(Path(cwd))
    )
    if not module_name:
        raise ConfigurationError(
            "no Django settings: pass --settings MODULE or set DJANGO_SETTINGS_MODULE "
            "(or run snapctl in the directory that holds manage.py)"
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = module_name
    return module_name


def _configure_logging() -> None:
    """Configure logging as ``django.setup()`` does, when the project configures any.

    With Django's defaults (no LOGGING, the default LOGGING_CONFIG) the only effect would be
    Django's own handlers for web requests and mail to ADMINS, which a command-line run never
    triggers, and importing them costs 0.1-0.2 s; they are then configured by
    :func:`require_apps` along with the app registry, exactly as ``django.setup()`` would.
    """
    global _logging_configured
    from django.conf import settings

    config = settings.LOGGING_CONFIG
    if config and (settings.LOGGING or config != _DEFAULT_LOGGING_CONFIG):
        from django.utils.log import configure_logging

        configure_logging(config, settings.LOGGING)
        _logging_configured = True


def load_settings(options: DjangoOptions, *, logging: bool = True) -> str:
    """Load the project's settings into ``django.conf.settings`` and configure its logging,
    without the app registry: enough for every connector that declares it works from the
    settings alone. Later calls do nothing. Returns the settings module's name.

    Shell completion passes ``logging=False``: a Tab should not open the project's log
    files, nor complete nothing because of them."""
    global _loaded
    if _loaded is not None:
        return _loaded
    module_name = _locate_settings(options)
    _import_settings(module_name)
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.DATABASES  # noqa: B018 - the first access loads the settings
    except ImproperlyConfigured as exc:
        raise ConfigurationError(f"Django settings are not usable: {exc}") from exc
    if logging:
        try:
            _configure_logging()
        except Exception as exc:  # as django.setup() fails on it, with one clear line
            raise ConfigurationError(
                f"settings.LOGGING cannot be configured: {type(exc).__name__}: {exc}"
            ) from exc
    _loaded = module_name
    return module_name


def settings_loaded() -> bool:
    """Whether :func:`load_settings` has run in this process."""
    return _loaded is not None


class UnknownModel(LookupError):
    """No installed app or model by that name; the message says which, and what there is."""


def installed_model(app_label: str, model_name: str) -> Any:
    """The model ``app_label.model_name`` of the (populated) app registry; an
    :class:`UnknownModel` naming the installed apps, or the app's models, if there is none."""
    from django.apps import apps

    try:
        config = apps.get_app_config(app_label)
    except LookupError:
        labels = ", ".join(sorted(c.label for c in apps.get_app_configs()))
        raise UnknownModel(f"no installed app {app_label!r} (installed: {labels})") from None
    try:
        return config.get_model(model_name)
    except LookupError:
        names = ", ".join(sorted(m.__name__ for m in config.get_models())) or "none"
        raise UnknownModel(
            f"app {app_label!r} has no model {model_name!r} (its models: {names})"
        ) from None


def require_apps() -> None:
    """Populate the app registry once, after :func:`load_settings`: the rest of what
    ``django.setup()`` does. Connectors that need models (dumpdata, plugins that do not say
    otherwise) get it; it costs seconds on a project with many apps."""
    global _apps_ready
    if _apps_ready:
        return
    if _loaded is None:
        raise RuntimeError("load_settings() must come before require_apps()")
    import django
    from django.apps import apps
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.urls import set_script_prefix

    try:
        if not _logging_configured:
            django.setup()  # logging with Django's defaults, the script prefix, the apps
        else:
            set_script_prefix(
                "/" if settings.FORCE_SCRIPT_NAME is None else settings.FORCE_SCRIPT_NAME
            )
            apps.populate(settings.INSTALLED_APPS)
    except ImproperlyConfigured as exc:
        raise ConfigurationError(f"Django settings are not usable: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"Django failed to start with settings '{_loaded}': {type(exc).__name__}: {exc}"
        ) from exc
    _apps_ready = True


def snapshot_settings() -> dict[str, Any]:
    """The project's ``SNAPSHOTS`` setting, or an empty dict."""
    from django.conf import settings

    value = getattr(settings, "SNAPSHOTS", None) or {}
    if not isinstance(value, dict):
        raise ConfigurationError("settings.SNAPSHOTS must be a dict")
    return value


def database_aliases() -> list[str]:
    from django.db import connections

    return list(connections.settings)


def database_settings(alias: str) -> dict[str, Any]:
    """DATABASES[alias] with Django's defaults filled in; an unknown alias is a usage error.

    Read from the connection handler's settings, not a connection: that would import the
    database backend (0.1 s for SQLite, more for PostgreSQL) only to read a dict."""
    from django.db import connections

    configured = connections.settings
    if alias not in configured:
        known = ", ".join(configured) or "none"
        raise ConfigurationError(f"unknown database alias '{alias}'; DATABASES has: {known}")
    return dict(configured[alias])


# The vendor of Django's own backends, known without importing them.
_VENDORS = {
    "django.db.backends.sqlite3": "sqlite",
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.db.backends.oracle": "oracle",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "django.contrib.gis.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.oracle": "oracle",
}


def database_vendor(alias: str) -> str:
    """The backend's vendor (``sqlite``, ``postgresql``, ``mysql``, ...) of ``alias``."""
    engine = str(database_settings(alias).get("ENGINE", ""))
    if engine in _VENDORS:
        return _VENDORS[engine]
    from django.db import connections

    return str(connections[alias].vendor)


def database_identity(alias: str) -> dict[str, str]:
    """Which database ``alias`` is: its vendor, NAME (a SQLite file as an absolute path),
    HOST and PORT. Recorded in each snapshot, so that ``latest`` and labels never pick a
    snapshot of another database that shares the store."""
    settings = database_settings(alias)
    vendor = database_vendor(alias)
    name = str(settings.get("NAME") or "")
    if vendor == "sqlite" and name and not name.startswith(("file:", ":memory:")):
        name = str(Path(name).expanduser().resolve())
    return {
        "vendor": vendor,
        "name": name,
        "host": str(settings.get("HOST") or ""),
        "port": str(settings.get("PORT") or ""),
    }


def close_connection(alias: str) -> None:
    """Close Django's own connection to ``alias`` if this process opened one."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.alias == alias:
            connection.close()


def project_key() -> str:
    """A name that keeps two projects' snapshots apart on one machine: the settings module and
    a short hash of where its file lives."""
    import hashlib

    module_name = os.environ.get("DJANGO_SETTINGS_MODULE", "project")
    module = sys.modules.get(module_name)
    location = getattr(module, "__file__", None) or module_name
    digest = hashlib.sha256(str(Path(location).resolve()).encode()).hexdigest()[:8]
    return f"{module_name}-{digest}"
