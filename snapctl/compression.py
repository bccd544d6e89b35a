"""Streaming compression of artifacts, hashing as it goes, in bounded memory.

zstd at a low level is the default: it costs little next to the dump itself and still
shrinks SQL and data files several times.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import zlib
from pathlib import Path
from typing import IO, BinaryIO, cast

from snapctl.errors import ConfigurationError, IntegrityError

CHUNK = 1024 * 1024
ZSTD_DEFAULT_LEVEL = 3
ZSTD_JOB_SIZE = 2 * 1024 * 1024
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}


class _HashingWriter:
    """A file wrapper that hashes and counts every byte written through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
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


def compress(src: Path, dest: Path, method: str, level: int | None = None) -> tuple[int, str]:
    """Write ``src`` compressed with ``method`` to ``dest``; return (size, sha256) of ``dest``."""
    with open(src, "rb") as reader, open(dest, "wb") as raw:
        writer = _HashingWriter(raw)
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
            compressor.copy_stream(
                reader, cast(IO[bytes], writer), read_size=CHUNK, write_size=CHUNK
            )
        elif method == "gzip":
            with gzip.GzipFile(
                fileobj=cast(IO[bytes], writer),
                mode="wb",
                compresslevel=6 if level is None else level,
                mtime=0,
            ) as gz:
                shutil.copyfileobj(reader, gz, CHUNK)
        else:
            shutil.copyfileobj(reader, cast(IO[bytes], writer), CHUNK)
    return writer.size, writer.sha256.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
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


def decompress(src: Path, dest: Path, method: str) -> str:
    """Write ``src`` decompressed to ``dest``; return the sha256 of ``src`` as read.

    The caller compares that digest with the manifest before using ``dest``, so one pass over
    the artifact both verifies and unpacks it.
    """
    with open(src, "rb") as raw, open(dest, "wb") as writer:
        reader = _HashingReader(raw)
        try:
            if method == "zstd":
                import zstandard

                zstandard.ZstdDecompressor().copy_stream(
                    cast(IO[bytes], reader), writer, read_size=CHUNK, write_size=CHUNK
                )
            elif method == "gzip":
                with gzip.GzipFile(fileobj=cast(IO[bytes], reader), mode="rb") as gz:
                    shutil.copyfileobj(gz, writer, CHUNK)
            elif method == "none":
                shutil.copyfileobj(reader, cast(IO[bytes], writer), CHUNK)
            else:
                raise IntegrityError(f"artifact {src.name} uses unknown compression '{method}'")
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise IntegrityError(f"artifact {src.name} is damaged: {exc}") from exc
        except OSError:
            raise  # reading or writing failed (a full disk, say): not the artifact's fault
        except Exception as exc:  # zstandard.ZstdError derives from Exception only
            if type(exc).__name__ != "ZstdError":
                raise
            raise IntegrityError(f"artifact {src.name} is damaged: {exc}") from exc
        # Read what the decompressor left, so the digest covers the whole file.
        while reader.read(CHUNK):
            pass
    return reader.sha256.hexdigest()
