"""Streaming compression of artifacts, hashing as it goes, in bounded memory.

zstd at level 1 is the default: it costs little next to the dump itself and still shrinks
SQL and data files about three times. The artifact is written as the dump arrives (see
receiver.py), or, for connectors that need a file they can seek in, in a second pass.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

from snapctl.errors import ConfigurationError, IntegrityError

CHUNK = 1024 * 1024
# Level 1: measured on the benchmark's 230 MB dumps, twice as fast as level 3 (0.34-0.37 s
# against 0.76-0.84 s on two cores) and no larger (80 MB against 81 MB for PostgreSQL's and
# MariaDB's; 2% larger for a SQLite file).
ZSTD_DEFAULT_LEVEL = 1
ZSTD_JOB_SIZE = 2 * 1024 * 1024
# Compressed bytes read at once by the zstd decompressor.
ZSTD_READ = 256 * 1024
GZIP_DEFAULT_LEVEL = 6
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}
# An encrypted artifact's name ends so, after its compression's suffix.
ENCRYPTED_SUFFIX = ".age"
# What an encrypted artifact is read through: its plaintext, from its stored bytes.
Unseal = Callable[[BinaryIO], contextlib.AbstractContextManager[BinaryIO]]


# zstd up to this level compresses faster than the dump tools write (hundreds of MB/s on
# two cores); gzip and high zstd levels run at tens of MB/s or less.
_ZSTD_FAST_ENOUGH = 3


def keeps_up(method: str, level: int | None) -> bool:
    """Whether compressing as the dump arrives keeps pace with the dump, so streaming does
    not stretch the dump's read transaction (or SQLite's read lock) to the compressor's
    pace. Slower methods compress in a second pass, after the dump has let go."""
    if method == "none":
        return True
    return method == "zstd" and (level is None or level <= _ZSTD_FAST_ENOUGH)


class _Stream(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class _HashingWriter:
    """A file wrapper that hashes and counts every byte written through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)


LEVELS = {"zstd": range(-7, 23), "gzip": range(1, 10)}


def check_method(method: str, level: int | None = None) -> str:
    """Refuse an unknown method, or a level the method does not have, before any work."""
    if method not in SUFFIXES:
        choices = ", ".join(SUFFIXES)
        raise ConfigurationError(f"unknown compression '{method}'; choose one of: {choices}")
    if level is not None:
        levels = LEVELS.get(method)
        if levels is None:
            raise ConfigurationError(f"--level does not apply to --compress {method}")
        if level not in levels:
            raise ConfigurationError(
                f"{method} has levels {levels.start} to {levels.stop - 1}, not {level}"
            )
    return method


class ArtifactWriter:
    """Writes one artifact: compresses what it is given with ``method``, encrypts that to
    ``recipients`` (pyrage's) if any, and hashes and counts the bytes that reach the file, in
    one pass, so nothing is read back afterwards."""

    def __init__(
        self,
        raw: BinaryIO,
        method: str,
        level: int | None = None,
        recipients: Sequence[Any] = (),
    ) -> None:
        from snapctl.encryption.streams import EncryptingWriter

        self._file = _HashingWriter(raw)
        # Compressed, then encrypted: encrypted bytes do not compress.
        self._encrypting = EncryptingWriter(self._file, recipients) if recipients else None
        sealed: _Stream = self._encrypting or self._file
        self._stream: _Stream = sealed
        self._end: Callable[[], None] | None = None  # writes the compressed stream's trailer
        self.size = 0
        self.sha256 = ""
        self.plaintext_sha256: str | None = None  # of what was encrypted, if it was
        self.unpacked = 0  # bytes given: what unpacking the artifact gives back
        if method == "zstd":
            import zstandard

            # Every core, in 2 MiB jobs: as fast as zstd's default jobs, in a third of the
            # memory (measured: 30 MB instead of 70 MB more on a 220 MB database).
            params = zstandard.ZstdCompressionParameters.from_level(
                ZSTD_DEFAULT_LEVEL if level is None else level,
                threads=-1,
                job_size=ZSTD_JOB_SIZE,
                write_checksum=True,
            )
            compressor = zstandard.ZstdCompressor(compression_params=params)
            zstd = compressor.stream_writer(
                cast(IO[bytes], sealed), write_size=CHUNK, closefd=False
            )
            self._stream, self._end = zstd, zstd.close
        elif method == "gzip":
            gz = gzip.GzipFile(
                fileobj=cast(IO[bytes], sealed),
                mode="wb",
                compresslevel=GZIP_DEFAULT_LEVEL if level is None else level,
                mtime=0,
            )
            self._stream, self._end = gz, gz.close  # close() leaves the file open

    def write(self, data: bytes | memoryview) -> None:
        self._stream.write(data)
        self.unpacked += len(data)

    def finish(self) -> None:
        """End the compressed stream; ``size`` and ``sha256`` then describe the file."""
        if self._end is not None:
            self._end()
        if self._encrypting is not None:
            self._encrypting.finish()
            self.plaintext_sha256 = self._encrypting.plaintext_sha256
        self.size = self._file.size
        self.sha256 = self._file.sha256.hexdigest()

    def abandon(self) -> None:
        """Stop the encryption's thread, if any: the artifact will not be finished."""
        if self._encrypting is not None:
            self._encrypting.abandon()


@contextlib.contextmanager
def artifact_writer(
    dest: Path, method: str, level: int | None = None, recipients: Sequence[Any] = ()
) -> Iterator[ArtifactWriter]:
    """An :class:`ArtifactWriter` into a new private file ``dest``, finished and flushed to
    disk when the block ends; ``dest`` is removed if the block fails."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Buffered: a raw file may write less than it is given; a buffered one never does.
        with open(fd, "wb", closefd=True) as raw:
            writer = ArtifactWriter(raw, method, level, recipients)
            try:
                yield writer
                writer.finish()
            except BaseException:
                writer.abandon()
                raise
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def compress(
    src: Path, dest: Path, method: str, level: int | None = None, recipients: Sequence[Any] = ()
) -> ArtifactWriter:
    """Write ``src`` compressed with ``method`` (and encrypted to ``recipients``) to
    ``dest``; the finished writer says what was written."""
    with (
        open(src, "rb", buffering=0) as reader,
        artifact_writer(dest, method, level, recipients) as writer,
    ):
        while chunk := reader.read(CHUNK):
            writer.write(chunk)
    return writer


def file_sha256(path: Path) -> str:
    with open(path, "rb") as reader:
        return sha256_of(reader)


def sha256_of(reader: BinaryIO) -> str:
    """The sha256 of what is left to read in ``reader``."""
    digest = hashlib.sha256()
    while chunk := reader.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class _HashingReader:
    """A file wrapper that hashes every byte read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data

    def finish(self) -> str:
        """Read what the decompressor left, so the digest covers the whole file."""
        while self.read(CHUNK):
            pass
        return self.sha256.hexdigest()


# A new file, never one already there nor through a link someone planted in its place.
_NEW_PRIVATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def decompress(
    src: BinaryIO,
    name: str,
    dest: Path,
    method: str,
    limit: int | None = None,
    unseal: Unseal | None = None,
) -> str:
    """Write the artifact open as ``src`` (called ``name``) decrypted with ``unseal`` if it
    is encrypted and decompressed to a new private file ``dest``, at most ``limit`` bytes;
    return the sha256 of ``src`` as read.

    The caller compares that digest with the manifest before using ``dest``: one pass over
    the artifact both verifies it and makes the private copy that is restored, so what is
    restored is exactly what was hashed, whatever happens to the stored file meanwhile.
    """
    fd = os.open(dest, _NEW_PRIVATE_FILE, 0o600)
    with open(fd, "wb") as writer:
        reader = _HashingReader(src)
        for chunk in _unpacked(cast(BinaryIO, reader), name, method, limit, unseal):
            writer.write(chunk)
        return reader.finish()


def unpacked_chunks(
    src: BinaryIO,
    name: str,
    method: str,
    limit: int | None = None,
    sha256: str | None = None,
    unseal: Unseal | None = None,
) -> Generator[bytes]:
    """The content of the artifact open as ``src`` (called ``name``), in chunks of up to
    :data:`CHUNK` bytes, at most ``limit`` bytes in all. With ``sha256``, the artifact's
    bytes are hashed as they are read and the last chunk is followed by an
    :class:`IntegrityError` if they differ: they changed since they were verified."""
    reader = _HashingReader(src)
    yield from _unpacked(cast(BinaryIO, reader), name, method, limit, unseal)
    if sha256 is not None and reader.finish() != sha256:
        raise IntegrityError(f"artifact {name} changed after it was verified; restore it again")


def _unpacked(
    raw: BinaryIO, name: str, method: str, limit: int | None, unseal: Unseal | None
) -> Iterator[bytes]:
    """Decrypt ``raw`` with ``unseal``, if given, and decompress it with ``method``, never
    past ``limit`` bytes (what the manifest records: a few KB can stand for terabytes); a
    damaged stream, or one longer than that, is an :class:`IntegrityError`."""
    total = 0
    with unseal(raw) if unseal is not None else contextlib.nullcontext(raw) as plain:
        for chunk in _decompressed(plain, name, method):
            total += len(chunk)
            if limit is not None and total > limit:
                raise IntegrityError(
                    f"artifact {name} unpacks to more than the {limit} bytes its manifest "
                    "records; it is damaged or crafted, restore another snapshot"
                )
            yield chunk


def _decompressed(raw: BinaryIO, name: str, method: str) -> Iterator[bytes]:
    """Decompress ``raw`` with ``method``; a damaged stream is an :class:`IntegrityError`."""
    try:
        if method == "zstd":
            yield from _zstd_frames(raw)
        elif method == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                while chunk := gz.read(CHUNK):
                    yield chunk
        elif method == "none":
            while chunk := raw.read(CHUNK):
                yield chunk
        else:
            raise IntegrityError(f"artifact {name} uses unknown compression '{method}'")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IntegrityError(f"artifact {name} is damaged: {exc}") from exc
    except OSError:
        raise  # reading failed: not the artifact's fault
    except Exception as exc:  # zstandard.ZstdError derives from Exception only
        if type(exc).__name__ != "ZstdError":
            raise
        raise IntegrityError(f"artifact {name} is damaged: {exc}") from exc


def _zstd_frames(raw: BinaryIO) -> Iterator[bytes]:
    """Every frame's content in turn, at most :data:`CHUNK` bytes at a time: a few bytes of
    zstd can stand for hundreds of MB of zeros, so nothing is decompressed unbounded. An
    artifact cut short ends quietly here; the checksum, verified before any use, catches it.
    """
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(
        raw, read_size=ZSTD_READ, read_across_frames=True, closefd=False
    )
    with reader:
        while chunk := reader.read(CHUNK):
            yield chunk
