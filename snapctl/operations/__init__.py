"""Dump and restore, end to end: choose connectors, write or verify snapshots, call them.

Nothing here prints or exits; the command line does that with what these return or raise.
``dumping`` and ``restoring`` do the two jobs, ``hooks`` calls the hooks of connectors that
keep data outside the snapshot, and ``loading`` holds what they share about connectors.
"""

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
