"""Temporary directories in the store, named after the process that owns them, so that what a
killed process left can be told from work in progress and removed."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def scratch_prefix() -> str:
    """The start of the name of each temporary directory this process makes in the store."""
    return f"{TEMP_PREFIX}{os.getpid()}-"


def clean_leftovers(root: Path) -> None:
    """Remove temporary directories of dumps whose process is gone (killed, crashed)."""
    for entry in root.glob(TEMP_PREFIX + "*"):
        pid_text = entry.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            if entry.is_symlink():
                with contextlib.suppress(OSError):  # another user's, in a shared store
                    entry.unlink()  # removed, never followed
            else:
                shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
