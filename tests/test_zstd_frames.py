"""zstd artifacts in 4 MiB frames: any decoder reads them, and a restore unpacks them on
every core; artifacts framed otherwise (older snapctls, other tools) still unpack."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
import zstandard

from snapctl import compression, zstd_frames
from snapctl.errors import IntegrityError

FRAME = zstd_frames.FRAME_BYTES


def payload(size: int) -> bytes:
    """Part random, part repetitive, like a database: frames of every kind of block."""
    random_part = os.urandom(size // 3)
    return (random_part + b"row, " * size)[:size]


@pytest.mark.parametrize("size", [0, 1000, FRAME, FRAME + 1, 3 * FRAME - 7, 5 * FRAME])
def test_framed_artifacts_round_trip_and_are_plain_zstd(tmp_path: Path, size: int) -> None:
    data = payload(size)
    src, packed, unpacked = tmp_path / "src", tmp_path / "packed.zst", tmp_path / "unpacked"
    src.write_bytes(data)
    packed_size, digest = compression.compress(src, packed, "zstd")
    assert digest == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert packed_size == packed.stat().st_size
    # Plain zstd: a stock decoder reads every frame.
    reader = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(packed.read_bytes()), read_across_frames=True
    )
    assert reader.read() == data
    # The parallel path takes it (no fallback), and gives the same bytes and digest.
    assert zstd_frames.unpack(packed, unpacked) == digest
    assert unpacked.read_bytes() == data
    assert compression.decompress(packed, unpacked, "zstd") == digest


@pytest.mark.parametrize(
    "content",
    [payload(3 * FRAME), bytes(64 * FRAME)],  # the second: 256 MiB in a frame of a few KiB
    ids=["one-big-frame", "small-frame-large-content"],
)
def test_artifacts_framed_otherwise_still_unpack(tmp_path: Path, content: bytes) -> None:
    packed, unpacked = tmp_path / "old.zst", tmp_path / "unpacked"
    packed.write_bytes(zstandard.ZstdCompressor(level=3).compress(content))  # one frame
    assert zstd_frames.unpack(packed, unpacked) is None  # not ours: left to the stream
    digest = compression.decompress(packed, unpacked, "zstd")
    assert unpacked.read_bytes() == content
    assert digest == hashlib.sha256(packed.read_bytes()).hexdigest()


def packed_artifact(tmp_path: Path) -> tuple[Path, str]:
    src, packed = tmp_path / "src", tmp_path / "packed.zst"
    src.write_bytes(payload(3 * FRAME))
    return packed, compression.compress(src, packed, "zstd")[1]


@pytest.mark.parametrize("where", ["header", "middle", "checksum"])
def test_a_damaged_framed_artifact_never_passes(tmp_path: Path, where: str) -> None:
    """Refused as damaged by the decoder, or by its checksum as a restore compares it."""
    packed, digest = packed_artifact(tmp_path)
    damaged = bytearray(packed.read_bytes())
    at = {"header": 5, "middle": len(damaged) // 2, "checksum": len(damaged) - 2}[where]
    damaged[at] ^= 0xFF
    packed.write_bytes(bytes(damaged))
    try:
        unpacked_digest = compression.decompress(packed, tmp_path / "unpacked", "zstd")
    except IntegrityError as exc:
        assert "damaged" in str(exc)
    else:
        assert unpacked_digest != digest


def test_a_cut_short_framed_artifact_never_passes(tmp_path: Path) -> None:
    packed, digest = packed_artifact(tmp_path)
    packed.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    try:
        unpacked_digest = compression.decompress(packed, tmp_path / "unpacked", "zstd")
    except IntegrityError:
        return
    assert unpacked_digest != digest
