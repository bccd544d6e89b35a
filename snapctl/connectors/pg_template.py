"""Where the ``postgres-template`` connector used to live, kept so that settings importing
``PostgresTemplateConnector`` from here keep working; it is now
:mod:`snapctl.connectors.postgres.template`."""

from __future__ import annotations

from snapctl.connectors.postgres.template import PostgresTemplateConnector

__all__ = ["PostgresTemplateConnector"]
