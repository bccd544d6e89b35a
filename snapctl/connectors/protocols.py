"""The connector protocol, unchanged from the reference API so existing connectors work here.

It is defined with the rest of the connector contract in :mod:`snapctl.connectors.api`.
"""

from __future__ import annotations

from snapctl.connectors.api import DatabaseConnector

__all__ = ["DatabaseConnector"]
