"""A Django database alias pointed at a scratch copy for a while: the live alias's settings
with NAME (or whatever the connector says) replaced. Through it the rules are applied with
Django's own connection, the same code on every engine, and the connector dumps the copy with
the same code that dumps the live database."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any


def scratch_alias_name(db_alias: str) -> str:
    """What messages call the copy: the alias, and what it is."""
    return f"{db_alias} (sanitized copy)"


@contextlib.contextmanager
def temporary_alias(db_alias: str, overrides: Mapping[str, Any]) -> Iterator[str]:
    """Yield an alias whose settings are ``db_alias``'s with ``overrides``; its connection is
    closed and the alias forgotten on the way out, whatever happens."""
    from django.db import connections

    from snapctl.django_env import database_settings

    alias = scratch_alias_name(db_alias)
    entry = copy.deepcopy(database_settings(db_alias))
    entry.update(overrides)
    connections.settings[alias] = entry
    try:
        yield alias
    finally:
        for connection in connections.all(initialized_only=True):
            if connection.alias == alias:
                with contextlib.suppress(Exception):
                    connection.close()
                del connections[alias]
        connections.settings.pop(alias, None)
