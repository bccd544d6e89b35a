"""Files of the store, handled as input from outside: regular files only, opened without
following links nor blocking on pipes, directories made private, owners checked, and what is
written flushed to disk (see docs/store.md, "What is checked")."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from snapctl.errors import IntegrityError

# Opens a file as it is: never through a link, never waiting on a pipe's writer.
NO_FOLLOW_NO_BLOCK = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes. A symlink
    (to /dev/zero, say) or a named pipe planted as a manifest must neither exhaust memory nor
    hang ``list``: opened without following a link and without blocking on a pipe, then
    checked, then read."""
    fd = os.open(path, NO_FOLLOW_NO_BLOCK)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise IntegrityError(f"{path} is not a regular file; remove it")
        if status.st_size > limit:
            raise IntegrityError(f"{path} is {status.st_size} bytes, more than {limit}; remove it")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise IntegrityError(f"{path} grew past {limit} bytes while read; remove it")
    return data


def check_owned(path: Path, *, shared: bool) -> None:
    """Refuse ``path`` (exit 3) unless it is the user's own and nobody else can write it:
    in a directory others can write, a snapshot planted there would be listed as newest
    and restored, and a file swapped after it was verified. A ``shared`` store (a team
    directory opted into) skips this."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return  # what is missing is reported where it is needed
    if not stat.S_ISLNK(status.st_mode):  # a link's mode means nothing; never followed
        refuse_unless_owned(path, status, shared=shared)


def refuse_unless_owned(path: Path, status: os.stat_result, *, shared: bool) -> None:
    """:func:`check_owned` for a file already examined (``status``, its lstat or fstat)."""
    if shared:
        return
    if status.st_uid != os.getuid():
        problem = f"belongs to another user (uid {status.st_uid})"
    elif status.st_mode & 0o002 or (
        status.st_mode & 0o020 and (not _private_group(status.st_gid) or _has_acl(path))
    ):
        problem = "is writable by others"
    else:
        return
    raise IntegrityError(
        f"{path} {problem}; snapctl reads only what you alone can change: fix it "
        "(chown, chmod go-w), or pass --shared-store for a team directory you trust"
    )


def _private_group(gid: int) -> bool:
    """Whether group ``gid`` is the user's own private group (Debian and Ubuntu give each
    user one, and a umask of 002 then makes new files group-writable harmlessly)."""
    import grp
    import pwd

    try:
        group = grp.getgrgid(gid)
        user = pwd.getpwuid(os.getuid())
    except KeyError:
        return False
    return gid == user.pw_gid and group.gr_name == user.pw_name and not group.gr_mem


def _has_acl(path: Path) -> bool:
    """Whether ``path`` has a POSIX ACL: its mode's group bits then stand for the most any
    named user or group gets, so group-write may mean another user's write."""
    try:
        return "system.posix_acl_access" in os.listxattr(path, follow_symlinks=False)
    except (OSError, AttributeError):  # no extended attributes here: no ACL
        return False


def make_private_dirs(path: Path) -> None:
    """Make ``path`` and its missing parents, each 0700 whatever the umask: ``mkdir -p``
    would give the parents the umask's mode, readable by everyone."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another snapctl made it meanwhile
            directory.mkdir(mode=0o700)
            directory.chmod(0o700)


def is_private_dir(path: Path) -> bool:
    """Whether ``path`` (not followed if a link) is a directory of ours that nobody else can
    read or write (mode 0700 or stricter)."""
    status = path.lstat()
    return (
        stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o077
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
