"""One line on stderr for the person at the terminal, from anywhere in snapctl.

Connectors and operations say what happens around them (a wait for another session, objects
a restore skipped) through :func:`notice`; the command line decides where it goes (above
the progress display, or nowhere with --quiet).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

_sink: list[Callable[[str], None]] = []


def configure(sink: Callable[[str], None]) -> None:
    """Where notices go for the rest of the command."""
    _sink[:] = [sink]


def notice(message: str) -> None:
    """Tell the person at the terminal ``message``, one line on stderr (not with --quiet)."""
    if _sink:
        _sink[0](message)
    else:
        print(f"snapctl: {message}", file=sys.stderr)
