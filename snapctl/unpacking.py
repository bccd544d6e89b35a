"""Unpacking a verified artifact in a background thread while a connector restores from it.

A restore from a compressed snapshot otherwise unpacks the whole artifact into a scratch
file first, then the connector reads that file: two passes, one after the other. A
connector that reads its file front to back (SQLite's backup API copies pages in order) can
instead follow the unpacking: it waits until the bytes it needs next are written. Only
artifacts whose checksum was already verified are unpacked this way, read from the same open
file that was hashed, and hashed again as they are read: bytes changed since (by whoever can
write the file) fail the unpacking before it ends. That error, or any other (a full disk),
reaches the connector at its next wait, and the connector then leaves the database
unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

from snapctl import compression
from snapctl.errors import OperationFailed


class Unpacking:
    """``path`` filling up with the unpacked content of ``stored``, front to back."""

    def __init__(
        self,
        stored: BinaryIO,
        name: str,
        path: Path,
        method: str,
        limit: int | None = None,
        sha256: str | None = None,
        unseal: compression.Unseal | None = None,
    ) -> None:
        self.path = path
        self._unseal = unseal
        self._stored = stored
        self._name = name
        self._sha256 = sha256
        self._method = method
        self._limit = limit
        self._changed = threading.Condition()
        self._written = 0
        self._done = False
        self._stopping = False
        self._error: BaseException | None = None
        self._can_punch = True
        self._punched_to = 0
        # A new file: never one already there, nor through a link planted in its place.
        self._fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        self._thread = threading.Thread(target=self._run, name="snapctl-unpack", daemon=True)

    def __enter__(self) -> Unpacking:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._changed:
            self._stopping = True  # a restore that failed early needs no more of the file
        self._thread.join()
        os.close(self._fd)

    def wait_for(self, size: int) -> bool:
        """Block until the first ``size`` bytes are written; False if the whole content
        turned out shorter. Raises the unpacking's error, if it failed."""
        with self._changed:
            self._changed.wait_for(lambda: self._written >= size or self._finished())
            self._raise_error()
            return self._written >= size

    def wait_done(self) -> int:
        """Block until all of it is written, the compressed stream's own checksum checked
        and, if a ``sha256`` was given, the artifact's bytes found still to have it; the
        content's size."""
        with self._changed:
            self._changed.wait_for(self._finished)
            self._raise_error()
            return self._written

    def reserve(self, size: int) -> None:
        """Make the file at least ``size`` bytes long now, zeros past what is written, for
        readers that check its length before they read (SQLite does)."""
        with self._changed, self._disk_errors():  # between chunks: the file only grows
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)

    def discard(self, start: int, end: int) -> None:
        """The reader is done with bytes ``start`` to ``end``: they are dropped from the
        file, unwritten (a hole is punched, where the file system can), so that a large
        scratch file costs no disk writes. Reading them again gives zeros."""
        with self._changed:
            start = max(start, self._punched_to)  # what is before was punched already
            end = min(end, self._written)
            if self._can_punch and end > start:
                self._can_punch = _punch_hole(self._fd, start, end - start)
                self._punched_to = end

    def _finished(self) -> bool:
        return self._done or self._error is not None

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    @contextlib.contextmanager
    def _disk_errors(self) -> Iterator[None]:
        """A full disk or a file-size limit, as one line naming the artifact."""
        try:
            yield
        except OSError as exc:
            if exc.strerror is None:
                raise
            raise OperationFailed(f"unpacking {self._name} failed: {exc.strerror}") from exc

    def _run(self) -> None:
        try:
            with self._disk_errors():
                complete = self._unpack()
        except BaseException as exc:  # handed to the waiting connector
            with self._changed:
                self._error = exc
                self._changed.notify_all()
        else:
            with self._changed:
                self._done = complete
                self._changed.notify_all()

    def _unpack(self) -> bool:
        """Write the content out; False if told to stop first."""
        with contextlib.closing(
            compression.unpacked_chunks(
                self._stored, self._name, self._method, self._limit, self._sha256, self._unseal
            )
        ) as chunks:
            for chunk in chunks:
                with self._changed:
                    if self._stopping:
                        return False
                    _write_all(self._fd, chunk)
                    self._written += len(chunk)
                    self._changed.notify_all()
        return True


# fallocate(2) flags: free the range's blocks, keep the file's length.
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


@functools.cache
def _fallocate() -> Callable[..., int] | None:
    """Linux's fallocate(2), which the os module lacks; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return cast(Callable[..., int], function)


def _punch_hole(fd: int, start: int, length: int) -> bool:
    """Free a range of the file; False where that cannot be done (then nothing changed)."""
    fallocate = _fallocate()
    if fallocate is None:
        return False
    return fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, start, length) == 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
