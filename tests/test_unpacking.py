"""Unpacking an artifact in a background thread while a reader follows it (unpacking.py),
and the chunked decompression under it (compression.unpacked_chunks)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapctl import compression
from snapctl.errors import IntegrityError, OperationFailed
from snapctl.unpacking import Unpacking

MiB = 1024 * 1024


def content(size: int) -> bytes:
    """Compressible but not trivially so: every block differs."""
    return b"".join(
        f"{n:08d} row of the snapshot, with some text\n".encode() for n in range(size // 40 + 1)
    )[:size]


def packed(tmp_path: Path, data: bytes, method: str = "zstd") -> Path:
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    artifact = tmp_path / f"artifact{compression.SUFFIXES[method]}"
    compression.compress(plain, artifact, method)
    plain.unlink()
    return artifact


def chunks_of(artifact: Path, method: str) -> Iterator[bytes]:
    with open(artifact, "rb") as stored:
        yield from compression.unpacked_chunks(stored, artifact.name, method)


@contextlib.contextmanager
def unpacking_of(artifact: Path, out: Path, sha256: str | None = None) -> Iterator[Unpacking]:
    with (
        open(artifact, "rb") as stored,
        Unpacking(stored, artifact.name, out, "zstd", sha256=sha256) as unpacking,
    ):
        yield unpacking


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_unpacked_chunks_give_back_the_content(tmp_path: Path, method: str) -> None:
    data = content(5 * MiB + 123)
    chunks = list(chunks_of(packed(tmp_path, data, method), method))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= compression.CHUNK  # bounded, not the whole file


def test_concatenated_zstd_frames_are_all_read(tmp_path: Path) -> None:
    first, second = content(MiB), content(2 * MiB)[::-1]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = packed(tmp_path / "a", first), packed(tmp_path / "b", second)
    both = tmp_path / "both.zst"
    both.write_bytes(one.read_bytes() + two.read_bytes())
    assert b"".join(chunks_of(both, "zstd")) == first + second


def test_highly_compressible_content_comes_in_bounded_chunks(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros"
    with open(zeros, "wb") as out:
        out.truncate(256 * MiB)  # a database full of empty pages, say
    artifact = tmp_path / "zeros.zst"
    compression.compress(zeros, artifact, "zstd")
    assert artifact.stat().st_size < MiB
    sizes = [len(c) for c in chunks_of(artifact, "zstd")]
    assert sum(sizes) == 256 * MiB
    assert max(sizes) <= compression.CHUNK


def test_a_gzip_artifact_cut_short_is_damaged(tmp_path: Path) -> None:
    # zstd's readers end quietly at a cut; the checksum catches it (test_sqlite.py).
    method = "gzip"
    artifact = packed(tmp_path, content(3 * MiB), method)
    cut = artifact.read_bytes()
    artifact.write_bytes(cut[: len(cut) // 2])
    with pytest.raises(IntegrityError, match="damaged"):
        b"".join(chunks_of(artifact, method))


def test_a_reader_waits_for_what_it_needs_and_gets_it(tmp_path: Path) -> None:
    data = content(20 * MiB)
    with unpacking_of(packed(tmp_path, data), tmp_path / "out") as unpacking:
        assert unpacking.wait_for(MiB)
        with open(unpacking.path, "rb") as reader:
            assert reader.read(MiB) == data[:MiB]
        assert unpacking.wait_done() == len(data)
        assert not unpacking.wait_for(len(data) + 1)  # beyond the end: False, no hang
    assert (tmp_path / "out").read_bytes() == data


def test_the_unpacking_error_reaches_the_reader(tmp_path: Path) -> None:
    artifact = packed(tmp_path, content(4 * MiB))
    damaged = bytearray(artifact.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    artifact.write_bytes(bytes(damaged))
    with unpacking_of(artifact, tmp_path / "out") as unpacking:
        with pytest.raises(IntegrityError, match="damaged"):
            unpacking.wait_done()
        with pytest.raises(IntegrityError):
            unpacking.wait_for(100 * MiB)  # and at every later wait


def test_a_full_disk_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("snapctl.unpacking._write_all", full)
    artifact = packed(tmp_path, content(MiB))
    with (
        unpacking_of(artifact, tmp_path / "out") as unpacking,
        pytest.raises(OperationFailed, match=r"unpacking artifact\.zst failed: No space"),
    ):
        unpacking.wait_for(10)


def test_leaving_early_stops_the_unpacking(tmp_path: Path) -> None:
    artifact = packed(tmp_path, content(64 * MiB))
    started = time.monotonic()
    with unpacking_of(artifact, tmp_path / "out") as unpacking:
        unpacking.wait_for(MiB)
    assert time.monotonic() - started < 5
    assert not any(t.name == "snapctl-unpack" for t in threading.enumerate())
    assert (tmp_path / "out").stat().st_size < 64 * MiB


def test_reserve_only_ever_grows_the_file(tmp_path: Path) -> None:
    data = content(3 * MiB)
    with unpacking_of(packed(tmp_path, data), tmp_path / "out") as unpacking:
        unpacking.reserve(8 * MiB)
        assert unpacking.path.stat().st_size == 8 * MiB
        unpacking.wait_done()
        unpacking.reserve(MiB)
        assert unpacking.path.stat().st_size == 8 * MiB
    with open(tmp_path / "out", "rb") as reader:
        assert reader.read(len(data)) == data
        assert reader.read() == bytes(8 * MiB - len(data))


def test_discarded_bytes_leave_the_disk(tmp_path: Path) -> None:
    data = content(16 * MiB)
    with unpacking_of(packed(tmp_path, data), tmp_path / "out") as unpacking:
        unpacking.wait_done()
        with open(unpacking.path, "rb") as handle:
            os.fsync(handle.fileno())  # blocks allocated on disk, not just dirty pages
        before = unpacking.path.stat().st_blocks * 512
        unpacking.discard(MiB, 15 * MiB)
        after = unpacking.path.stat().st_blocks * 512
        if after == before:
            pytest.skip(f"the file system of {tmp_path} cannot punch holes")
        assert before - after >= 13 * MiB
        raw = unpacking.path.read_bytes()
    assert raw[:MiB] == data[:MiB] and raw[15 * MiB :] == data[15 * MiB :]
    assert raw[MiB : 15 * MiB] == bytes(14 * MiB)


def test_bytes_changed_after_verification_fail_the_unpacking(tmp_path: Path) -> None:
    # Whoever can write the stored file rewrites it in place, with another valid artifact,
    # between the checksum and the restore: the unpacking hashes again what it reads, and
    # fails before it ends.
    data = content(4 * MiB)
    artifact = packed(tmp_path, data)
    verified = compression.file_sha256(artifact)
    (tmp_path / "other").mkdir()
    other = packed(tmp_path / "other", data[::-1]).read_bytes()
    with open(artifact, "rb") as stored:  # held open since it was verified
        with open(artifact, "r+b") as planted:
            planted.write(other)
            planted.truncate()
        with (
            Unpacking(stored, "a.zst", tmp_path / "out", "zstd", sha256=verified) as unpacking,
            pytest.raises(IntegrityError, match="changed after it was verified"),
        ):
            unpacking.wait_done()
    with unpacking_of(packed(tmp_path, data), tmp_path / "again", verified) as unpacking:
        assert unpacking.wait_done() == len(data)  # the same bytes pass


def test_unpacking_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    """A name planted where the private copy goes (a link to a file of the user's) is never
    followed nor truncated: both ways of unpacking make a new file or fail."""
    target = tmp_path / "authorized_keys"
    target.write_text("kept\n")
    artifact = packed(tmp_path, content(MiB))
    for name in ("copy", "followed"):
        (tmp_path / name).symlink_to(target)
    with open(artifact, "rb") as stored, pytest.raises(FileExistsError):
        compression.decompress(stored, artifact.name, tmp_path / "copy", "zstd")
    with open(artifact, "rb") as stored, pytest.raises(FileExistsError):
        Unpacking(stored, artifact.name, tmp_path / "followed", "zstd")
    assert target.read_text() == "kept\n"


def test_a_shared_store_unpacks_in_the_private_temporary_directory(tmp_path: Path) -> None:
    """Others can write a shared store: they could swap the scratch directory for one of
    theirs. Scratch goes there only for the user's own store."""
    from snapctl.operations.loading import scratch_dir
    from snapctl.store import SnapshotStore

    assert scratch_dir(SnapshotStore(tmp_path)) == str(tmp_path)
    assert scratch_dir(SnapshotStore(tmp_path, shared=True)) is None
