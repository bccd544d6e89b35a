"""The names of the side databases snapctl makes beside a live database, and of the marker
tables in them: recovery and ``drop_copy`` act on a database only by these names.

Beside ``<live>``, with ``<t>`` 8 hex digits:

- ``<live>_snapctl_<t>``: a restore's scratch database (the snapshot's tables, or only the
  swap's marker when a prepared copy is swapped in), ``<t>`` random;
- ``<live>_snapctl_<t>o``: the previous tables during a swap; after a prepared copy's swap,
  the retired database, holding the marker table ``snapctl_retired_<t>``;
- ``<live>_snapctl_<t>p``: a prepared copy, ``<t>`` the start of the SHA-256 of its mark, so
  that the mark alone finds it; its marker table is ``snapctl_prepared_<t>``.
"""

from __future__ import annotations

import hashlib
import re

SCRATCH_INFIX = "_snapctl_"
MAX_NAME = 64  # the longest database name both servers take
_RETIRED = "snapctl_retired_"
_PREPARED = "snapctl_prepared_"


def mark_digest(mark: str) -> str:
    """What a copy records of its mark: its SHA-256, so that the database holds no token."""
    return hashlib.sha256(mark.encode()).hexdigest()


def copy_name(live: str, mark: str) -> str:
    """The prepared copy's database for ``mark``."""
    return f"{live}{SCRATCH_INFIX}{mark_digest(mark)[:8]}p"


def copy_marker(name: str) -> str:
    """The marker table of the prepared copy ``name`` (``<live>_snapctl_<t>p``)."""
    return f"{_PREPARED}{name[-9:-1]}"


def copy_of_marker(live: str, marker: str) -> str | None:
    """The prepared copy whose marker table is ``marker``; None for any other table."""
    found = re.fullmatch(re.escape(_PREPARED) + r"([0-9a-f]{8})", marker)
    return f"{live}{SCRATCH_INFIX}{found.group(1)}p" if found else None


def retired_marker(token: str) -> str:
    """The table that says ``<live>_snapctl_<token>o`` is a retired database."""
    return f"{_RETIRED}{token}"


def side_kind(live: str, name: str) -> tuple[str, str] | None:
    """``(token, kind)`` of a side database of ``live`` (kind "" scratch, "o" previous tables
    or retired, "p" prepared copy); None for any other name."""
    found = re.fullmatch(re.escape(live + SCRATCH_INFIX) + r"([0-9a-f]{8})([op]?)", name)
    return (found.group(1), found.group(2)) if found else None
