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


_started: DjangoOptions | None = None


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


def configure(options: DjangoOptions) -> str:
    """Make the project importable and load its settings module, without starting Django.

    Enough for what only needs settings (shell completion of aliases and snapshots).
    Returns the settings module's name.
    """
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
    _import_settings(module_name)
    return module_name


def setup(options: DjangoOptions) -> None:
    """Configure and start Django once per process; later calls do nothing."""
    global _started
    if _started is not None:
        return
    module_name = configure(options)
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        raise ConfigurationError(f"Django settings are not usable: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"Django failed to start with settings '{module_name}': {type(exc).__name__}: {exc}"
        ) from exc
    _started = options


def snapshot_settings() -> dict[str, Any]:
    """The project's ``SNAPSHOTS`` setting, or an empty dict."""
    from django.conf import settings

    value = getattr(settings, "SNAPSHOTS", None) or {}
    if not isinstance(value, dict):
        raise ConfigurationError("settings.SNAPSHOTS must be a dict")
    return value


def database_aliases() -> list[str]:
    from django.db import connections

    return list(connections.databases)


def database_settings(alias: str) -> dict[str, Any]:
    """DATABASES[alias] with Django's defaults filled in; an unknown alias is a usage error."""
    from django.db import connections

    if alias not in connections.databases:
        known = ", ".join(connections.databases) or "none"
        raise ConfigurationError(f"unknown database alias '{alias}'; DATABASES has: {known}")
    return dict(connections[alias].settings_dict)


def project_key() -> str:
    """A name that keeps two projects' snapshots apart on one machine: the settings module and
    a short hash of where its file lives."""
    import hashlib

    module_name = os.environ.get("DJANGO_SETTINGS_MODULE", "project")
    module = sys.modules.get(module_name)
    location = getattr(module, "__file__", None) or module_name
    digest = hashlib.sha256(str(Path(location).resolve()).encode()).hexdigest()[:8]
    return f"{module_name}-{digest}"
