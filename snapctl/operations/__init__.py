"""Dump and restore, end to end: choose connectors, write or verify snapshots, call them.

Nothing here prints or exits; the command line does that with what these return or raise.
``dumping`` and ``restoring`` do the two jobs, ``preparing`` keeps prepared copies for
instant restores, ``hooks`` calls the hooks of connectors that keep data outside the
snapshot, and ``loading`` holds what they share about connectors.

Each name is imported from its module when first used: a restore does not pay for the
dump's modules, nor a dump for the restore's (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snapctl.operations.dumping import dump, select_aliases
    from snapctl.operations.hooks import (
        external_problems,
        forget,
        may_use_settings,
        needs_project,
    )
    from snapctl.operations.restoring import (
        RestorePlan,
        of_these_databases,
        plan_restore,
        restore,
    )

_WHERE = {
    "dump": "dumping",
    "select_aliases": "dumping",
    "external_problems": "hooks",
    "forget": "hooks",
    "may_use_settings": "hooks",
    "needs_project": "hooks",
    "RestorePlan": "restoring",
    "of_these_databases": "restoring",
    "plan_restore": "restoring",
    "restore": "restoring",
}

__all__ = [
    "RestorePlan",
    "dump",
    "external_problems",
    "forget",
    "may_use_settings",
    "needs_project",
    "of_these_databases",
    "plan_restore",
    "restore",
    "select_aliases",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'snapctl.operations' has no attribute {name!r}")
    return getattr(importlib.import_module(f"snapctl.operations.{_WHERE[name]}"), name)
