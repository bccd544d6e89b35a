"""zstd artifacts in independent frames of 4 MiB, so a restore decompresses them on every
core instead of one.

A file of concatenated frames is plain zstd: ``zstd -d`` and any decoder read it whole. Only
the size of each frame's content is ours: every frame but the last holds exactly
``FRAME_BYTES``, so frame ``i`` unpacks at offset ``i * FRAME_BYTES`` without reading the
others first. A file framed otherwise (an artifact from before, or another tool's) is left
to the caller's decoder in one stream: :func:`unpack` says so rather than deciding anything.
"""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO

FRAME_BYTES = 4 * 1024 * 1024
_READ = 1024 * 1024
_MAGIC = b"\x28\xb5\x2f\xfd"
# A frame's compressed size can exceed its content only by headers: 3 bytes per 128 KiB
# block, the frame header and checksum. Anything longer is not one of ours.
_MAX_FRAME = FRAME_BYTES + FRAME_BYTES // 1024 + 64
_MAX_WORKERS = 4


class FramedWriter:
    """A zstd stream writer that ends a frame after every ``FRAME_BYTES`` of input."""

    def __init__(self, compressor: Any, out: IO[bytes], write_size: int) -> None:
        import zstandard

        self._zstd = compressor.stream_writer(out, write_size=write_size, closefd=False)
        self._end_frame = zstandard.FLUSH_FRAME
        self._in_frame = 0

    def write(self, data: bytes | memoryview, /) -> int:
        view = memoryview(data)
        while view:
            part = view[: FRAME_BYTES - self._in_frame]
            self._zstd.write(part)
            self._in_frame += len(part)
            view = view[len(part) :]
            if self._in_frame == FRAME_BYTES:
                self._zstd.flush(self._end_frame)
                self._in_frame = 0
        return len(data)

    def close(self) -> None:
        self._zstd.close()  # ends the last frame


class _NotOurFraming(Exception):
    """The file is not framed as FramedWriter frames it (or is damaged: the caller's decoder
    tells which)."""


def unpack(src: Path, dest: Path) -> str | None:
    """Decompress ``src`` into ``dest`` on every core; the sha256 of ``src`` as read, or None
    if it is not framed as FramedWriter frames it (``dest`` is then to be written anew)."""
    import zstandard

    workers = max(1, min(os.cpu_count() or 1, _MAX_WORKERS))
    digest = hashlib.sha256()
    produced: list[int] = []
    with (
        open(src, "rb", buffering=0) as reader,
        open(dest, "wb") as out,
        ThreadPoolExecutor(workers, thread_name_prefix="snapctl-unpack") as pool,
    ):
        in_flight: collections.deque[Future[int]] = collections.deque()
        try:
            for index, frame in enumerate(_frames(reader, digest)):
                offset = index * FRAME_BYTES
                in_flight.append(pool.submit(_unpack_frame, frame, out.fileno(), offset))
                while len(in_flight) >= workers:  # bounded memory: one frame per worker
                    produced.append(in_flight.popleft().result())
            while in_flight:
                produced.append(in_flight.popleft().result())
        except (_NotOurFraming, zstandard.ZstdError):
            for pending in in_flight:
                pending.cancel()
            return None
    if any(size != FRAME_BYTES for size in produced[:-1]):
        return None
    return digest.hexdigest()


def _unpack_frame(frame: bytes, fd: int, offset: int) -> int:
    import zstandard

    # A header that declares its size is believed over max_output_size: check it first, so a
    # small frame of a large content (another tool's) cannot take all the memory.
    declared = zstandard.frame_content_size(frame)
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > FRAME_BYTES:
        raise _NotOurFraming
    data = memoryview(zstandard.ZstdDecompressor().decompress(frame, max_output_size=FRAME_BYTES))
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], offset + written)
    return len(data)


def _frames(reader: BinaryIO, digest: Any) -> Iterator[bytes]:
    """Each zstd frame of the file, whole and in order, hashing every byte read."""
    buffer = bytearray()
    at_end = False

    def fill(needed: int) -> bool:
        """At least ``needed`` bytes in the buffer, unless the file ends first."""
        nonlocal at_end
        while len(buffer) < needed and not at_end:
            chunk = reader.read(max(_READ, needed - len(buffer)))
            if not chunk:
                at_end = True
                break
            digest.update(chunk)
            buffer.extend(chunk)
        return len(buffer) >= needed

    while fill(1):
        length = _frame_length(buffer, fill)
        yield bytes(buffer[:length])
        del buffer[:length]


def _frame_length(buffer: bytearray, fill: Any) -> int:
    """The length of the frame at the start of ``buffer``, read from its header and block
    headers (RFC 8878), filling the buffer as far as needed."""
    import zstandard

    fill(18)  # the longest frame header
    if buffer[:4] != _MAGIC:
        raise _NotOurFraming  # skippable frames and anything else: not ours
    cursor = zstandard.frame_header_size(bytes(buffer[:18]))  # ZstdError if cut short
    has_checksum = buffer[4] & 0x04
    while True:
        if not fill(cursor + 3):
            raise _NotOurFraming  # cut short
        header = int.from_bytes(buffer[cursor : cursor + 3], "little")
        kind, size = (header >> 1) & 3, header >> 3
        if kind == 3:
            raise _NotOurFraming  # a reserved block type: damaged
        cursor += 3 + (1 if kind == 1 else size)
        if cursor > _MAX_FRAME:
            raise _NotOurFraming
        if header & 1:  # the frame's last block
            break
    cursor += 4 if has_checksum else 0
    if not fill(cursor):
        raise _NotOurFraming
    return cursor
