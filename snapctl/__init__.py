"""snapctl: take and restore snapshots of the databases of any Django project.

Importing this package stays cheap (no Django) so that ``snapctl --help`` and shell completion
are fast; the connector classes are loaded on first attribute access.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY_CLASSES = {
    "SQLiteConnector": "snapctl.connectors.sqlite",
    "PostgresConnector": "snapctl.connectors.postgres",
    "MySQLConnector": "snapctl.connectors.mysql",
    "DjangoDumpDataConnector": "snapctl.connectors.dumpdata",
}

__all__ = ["__version__", *_LAZY_CLASSES]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_CLASSES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'snapctl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
