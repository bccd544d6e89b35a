"""Room on a database server's disk for a prepared copy: a copy must not leave the disk
nearly full, where the live database would then fail to write. Checked only for a server on
this machine, whose data directory snapctl can look at."""

from __future__ import annotations

import os
import shutil

from snapctl.errors import ConfigurationError

# Servers reached by these names (or a socket directory) run on this machine.
_LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")
# Leave at least this share of the server's disk free after a prepared copy.
KEEP_FREE = 0.05


def is_local(host: str | None) -> bool:
    return host is None or host in _LOCAL_HOSTS or host.startswith("/")


def room_problem(needed: int, free: int, total: int, keep_free: float) -> str | None:
    """What is wrong with taking ``needed`` bytes of ``free`` on a disk of ``total``: it must
    leave ``keep_free`` of the disk free."""
    reserve = int(total * keep_free)
    if free - needed >= reserve:
        return None
    short = needed + reserve - free
    return (
        f"it needs about {_size(needed)} and {_size(free)} is free, which would leave less "
        f"than {keep_free:.0%} of the disk ({_size(short)} more is needed)"
    )


def check_room(
    target: str, host: str | None, data_directory: str | None, needed: int, keep_free: float
) -> None:
    """Refuse (ConfigurationError) to prepare a copy of ``target`` that would leave the disk
    of ``data_directory`` nearly full; a remote server or an unknown directory is not
    checked."""
    if not (data_directory and is_local(host) and os.path.isdir(data_directory)):
        return
    usage = shutil.disk_usage(data_directory)
    problem = room_problem(needed, usage.free, usage.total, keep_free)
    if problem:
        raise ConfigurationError(
            f"not enough room for a prepared copy of {target} on its server's disk "
            f"({data_directory}): {problem}; free some space, lower the connector's keep_free, "
            "or turn preparing off (--no-prepare, SNAPSHOTS['PREPARE'] = 'off')"
        )


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
