"""Auto-detection, with the reference API: pick a connector from an ENGINE or an alias."""

from __future__ import annotations

from typing import Any

from snapctl.connectors.protocols import DatabaseConnector


def get_connector_class(engine: str) -> type[Any]:
    """Return the connector class for engine (a DATABASES ENGINE string).

    Falls back to DjangoDumpDataConnector for unrecognised engines.
    """
    from snapctl.registry import class_for_engine

    return class_for_engine(engine)


def get_connector_for_alias(db_alias: str) -> DatabaseConnector:
    """Return a connector instance for db_alias.

    Checks SNAPSHOTS["DATABASE_CONNECTORS"] for an override first, then auto-detects from
    DATABASES[db_alias]["ENGINE"].
    """
    from snapctl.registry import choose

    return choose(db_alias).connector
