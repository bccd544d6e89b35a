"""Which other processes have a file open, to name them when snapctl waits on them.

SQLite's locks say that someone holds the database, not who: the processes with the file
open are the candidates, found through Linux's /proc (as ``fuser`` finds them). Elsewhere,
or for processes of other users that /proc hides, nobody is named.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def holders(path: Path) -> list[str]:
    """``pid 123 (python3 manage.py shell)`` for each other process with ``path`` open."""
    target = str(path)
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            if _has_open(entry.path, target):
                found.append(f"pid {entry.name} ({_command(entry.path)})")
    return found


def _has_open(process: str, target: str) -> bool:
    try:
        descriptors = os.scandir(f"{process}/fd")
    except OSError:  # gone, or another user's
        return False
    with descriptors:
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(descriptor.path) == target:
                    return True
    return False


def _command(process: str) -> str:
    """What the process runs, for people to recognise it: its program and, for a Python
    script, the script (and a ``manage.py`` command). Never the rest of its command line,
    which may carry another program's password."""
    try:
        with open(f"{process}/cmdline", "rb") as handle:
            words = [w.decode(errors="replace") for w in handle.read().split(b"\0") if w]
    except OSError:
        return "?"
    if not words:
        return "?"
    shown = [os.path.basename(words[0])]
    if len(words) > 1 and words[1].endswith(".py"):
        shown.append(os.path.basename(words[1]))
        if shown[-1] == "manage.py" and len(words) > 2 and words[2].isidentifier():
            shown.append(words[2])
    return " ".join(shown)
