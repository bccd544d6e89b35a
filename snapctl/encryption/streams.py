"""age encryption of an artifact's bytes as they are written, and decryption as they are
read, in bounded memory.

pyrage (a binding of rage, the Rust implementation of age) encrypts and decrypts whole
streams with ``encrypt_io``/``decrypt_io``: each reads one file object to its end and writes
another. snapctl's writers are pushed to (the compressor writes into them) and its readers
are pulled from (the decompressor reads them), so each runs pyrage in a thread, joined to
the caller by a short queue of chunks: at most :data:`_QUEUED` chunks of up to
:data:`_CHUNK` bytes wait at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, Protocol, cast

from snapctl.errors import IntegrityError

_CHUNK = 1024 * 1024
_QUEUED = 4
# How often a side blocked on the queue looks whether the other side gave up.
_POLL_SECONDS = 0.1
_END = b""  # the queue's end of stream: a chunk is never empty


class _Stream(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class _Abandoned(Exception):
    """The other side of the queue gave up; the pyrage thread stops with this."""


class _Pipe:
    """A bounded queue of chunks between a thread that writes and one that reads, either of
    which may give up: the other then stops at its next wait instead of waiting forever.
    ``digest`` hashes what passes, on the writing side, a whole chunk at a time (hashlib lets
    other threads run meanwhile)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self._queue: queue.Queue[bytes] = queue.Queue(_QUEUED)
        self._pending = bytearray()  # written, not yet queued: pyrage writes 8 KiB at a time
        self._current = memoryview(b"")
        self._ended = False  # the end was read: readers may ask again (gzip does)
        self.abandoned = threading.Event()

    def write(self, data: bytes | memoryview) -> int:
        self._pending += data
        if len(self._pending) >= _CHUNK:
            self._put(bytes(self._pending))
            self._pending.clear()
        return len(data)

    def close_writing(self) -> None:
        if self._pending:
            self._put(bytes(self._pending))
            self._pending.clear()
        self._put(_END)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is queued now, if -1); b"" at the end."""
        if not self._current:
            chunk = b"" if self._ended else self._get()
            if not chunk:
                self._ended = True
                return b""
            self._current = memoryview(chunk)
        size = len(self._current) if size < 0 else size
        data, self._current = self._current[:size], self._current[size:]
        return bytes(data)

    def _put(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        while not self.abandoned.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(chunk, timeout=_POLL_SECONDS)
                return
        raise _Abandoned

    def _get(self) -> bytes:
        while not self.abandoned.is_set():
            with contextlib.suppress(queue.Empty):
                return self._queue.get(timeout=_POLL_SECONDS)
        raise _Abandoned


class _Thread:
    """``work`` in a daemon thread, its exception kept for the caller."""

    def __init__(self, name: str, work: Callable[[], object]) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the caller
                self.error = exc

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()


class _Recording:
    """Passes writes to ``out``, keeping the first exception ``out`` raised: pyrage turns it
    into its own error, and the caller wants the real one (a full disk, say)."""

    def __init__(self, out: _Stream) -> None:
        self._out = out
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._out.write(data)
        except BaseException as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        pass


class _RecordingReader:
    """Reads from ``raw``, keeping the first exception it raised (see :class:`_Recording`)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except BaseException as exc:
            self.error = self.error or exc
            raise


class EncryptingWriter:
    """Encrypts what is written into it to ``recipients`` (pyrage recipients) and writes the
    age stream to ``out``. ``plaintext_sha256`` is the digest of what was written in, once
    :meth:`finish` returns."""

    def __init__(self, out: _Stream, recipients: Sequence[Any]) -> None:
        import pyrage

        self._pipe = _Pipe()
        self._out = _Recording(out)
        self.plaintext_sha256 = ""

        def encrypt() -> None:
            try:
                pyrage.encrypt_io(cast(Any, self._pipe), cast(Any, self._out), list(recipients))
            except BaseException:
                self._pipe.abandoned.set()  # the writer's next wait ends: nobody reads
                raise

        self._thread = _Thread("snapctl-encrypt", encrypt)

    def write(self, data: bytes | memoryview) -> int:
        try:
            self._pipe.write(data)
        except _Abandoned:
            self._thread.join()  # it failed: its error is the cause
            self._raise_error()
            raise
        return len(data)

    def finish(self) -> None:
        """Write the end of the age stream; raises what stopped the encryption, if anything."""
        with contextlib.suppress(_Abandoned):  # it failed: its error is raised below
            self._pipe.close_writing()
        self._thread.join()
        self._raise_error()
        self.plaintext_sha256 = self._pipe.digest.hexdigest()

    def abandon(self) -> None:
        """Stop the encryption thread: the artifact is not wanted any more."""
        self._pipe.abandoned.set()
        self._thread.join()

    def _raise_error(self) -> None:
        error = self._out.error or self._thread.error
        if error is not None:
            self._pipe.abandoned.set()
            raise error


@contextlib.contextmanager
def decrypting(
    raw: BinaryIO, identities: Sequence[Any], name: str, plaintext_sha256: str
) -> Iterator[BinaryIO]:
    """What the age stream ``raw`` (the artifact called ``name``) decrypts to, as a file
    to read. Reading past the end raises an :class:`IntegrityError` if the stream fails age's
    authentication (altered or cut short) or its plaintext does not hash to
    ``plaintext_sha256``; leaving the block early stops the decryption."""
    import pyrage

    pipe = _Pipe()
    source = _RecordingReader(raw)

    def decrypt() -> None:
        try:
            pyrage.decrypt_io(cast(Any, source), cast(Any, pipe), list(identities))
        finally:
            if not pipe.abandoned.is_set():
                with contextlib.suppress(_Abandoned):
                    pipe.close_writing()  # also after a failure: the reader then sees it

    thread = _Thread("snapctl-decrypt", decrypt)
    reader = _DecryptedReader(pipe, thread, source, name, plaintext_sha256)
    try:
        yield cast(BinaryIO, reader)
    finally:
        pipe.abandoned.set()
        thread.join()


class _DecryptedReader:
    """The reading end of :func:`decrypting`, checking the plaintext when it ends."""

    def __init__(
        self,
        pipe: _Pipe,
        thread: _Thread,
        source: _RecordingReader,
        name: str,
        plaintext_sha256: str,
    ) -> None:
        self._pipe = pipe
        self._thread = thread
        self._source = source
        self._name = name
        self._expected = plaintext_sha256

    def read(self, size: int = -1) -> bytes:
        if size < 0:  # all that is left, as a file gives it
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        if size == 0:
            return b""
        data = self._pipe.read(size)
        if data:
            return data
        self._thread.join()
        self._check()
        return b""

    def readable(self) -> bool:
        return True

    def _check(self) -> None:
        if self._source.error is not None:
            raise self._source.error  # reading the stored file failed: not the artifact's fault
        error = self._thread.error
        if error is not None:
            raise IntegrityError(_decryption_problem(self._name, error)) from error
        if self._pipe.digest.hexdigest() != self._expected:
            raise IntegrityError(
                f"artifact {self._name} decrypts to other bytes than its manifest records; "
                "it was replaced or tampered with, restore another snapshot"
            )


def _decryption_problem(name: str, error: BaseException) -> str:
    if "no matching keys" in str(error).lower():
        return (
            f"artifact {name} is not encrypted to your identity, although its manifest says "
            "so; it was replaced or tampered with, restore another snapshot"
        )
    return (
        f"artifact {name} fails age's authentication ({error}); it is damaged or was "
        "tampered with, restore another snapshot"
    )
