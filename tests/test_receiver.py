"""The named pipe that connectors dump into: what arrives is the artifact, whatever the
connector does with the pipe, and a failure to write it is the error reported."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from snapctl import receiver
from snapctl.compression import ArtifactWriter
from snapctl.errors import OperationFailed
from snapctl.receiver import make_pipe, receive

PAYLOAD = os.urandom(3 << 20) + b"snapctl " * 500_000  # several pipe buffers, part compressible


def unpack(path: Path, method: str) -> bytes:
    data = path.read_bytes()
    if method == "zstd":  # every frame: artifacts hold one per 4 MiB
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        return reader.read()
    return gzip.decompress(data) if method == "gzip" else data


def run_within(seconds: float, work: Callable[[], None]) -> None:
    """Run ``work`` in a thread; fail (rather than hang) if it takes longer than ``seconds``."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "receive() hung"
    if errors:
        raise errors[0]


def piped(tmp_path: Path) -> Path:
    pipe = tmp_path / "dump.pipe"
    assert make_pipe(pipe)
    return pipe


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_what_a_process_writes_into_the_pipe_is_the_artifact(tmp_path: Path, method: str) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / f"artifact.{method}"
    with receive(piped(tmp_path), dest, method, None) as received:
        # A child process writing by itself, as pg_dump or mariadb-dump does.
        subprocess.run(["dd", f"if={source}", f"of={received.pipe}", "bs=4k"], check=True)
    assert unpack(dest, method) == PAYLOAD
    assert received.size == dest.stat().st_size
    assert received.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert dest.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "dump.pipe").exists()


def test_a_connector_that_never_opens_the_pipe_gives_an_empty_artifact(tmp_path: Path) -> None:
    dest = tmp_path / "artifact"

    def dump_nothing() -> None:
        with receive(piped(tmp_path), dest, "none", None) as received:
            pass
        assert received.sha256 == hashlib.sha256(b"").hexdigest()

    run_within(20, dump_nothing)
    assert dest.read_bytes() == b""


def test_a_dump_failing_part_way_leaves_no_artifact(tmp_path: Path) -> None:
    dest = tmp_path / "artifact.zst"

    def failing_dump() -> None:
        with (
            pytest.raises(RuntimeError, match="connection lost"),
            receive(piped(tmp_path), dest, "zstd", None) as received,
            open(received.pipe, "wb") as pipe,
        ):
            pipe.write(PAYLOAD)
            raise RuntimeError("connection lost")

    run_within(20, failing_dump)
    assert not dest.exists()
    assert not (tmp_path / "dump.pipe").exists()


def test_an_artifact_that_cannot_be_made_stops_the_dump_before_it_starts(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "missing-directory" / "artifact.zst"
    started = []
    with pytest.raises(FileNotFoundError), receive(piped(tmp_path), dest, "zstd", None):
        started.append(True)
    assert not started
    assert not (tmp_path / "dump.pipe").exists()


def test_a_failure_to_write_the_artifact_is_the_error_not_the_broken_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ArtifactWriter, "write", disk_full)

    def big_dump() -> None:
        with (
            pytest.raises(OSError, match="No space left"),
            receive(piped(tmp_path), tmp_path / "artifact.zst", "zstd", None) as received,
            open(received.pipe, "wb") as pipe,
        ):
            for _ in range(64):  # far more than the pipe holds: the dump's write fails
                pipe.write(PAYLOAD[: 1 << 20])

    def small_dump() -> None:  # fits in the pipe: the dump succeeds, the writing fails after
        with (
            pytest.raises(OSError, match="No space left"),
            receive(piped(tmp_path), tmp_path / "artifact.zst", "zstd", None) as received,
        ):
            Path(received.pipe).write_bytes(b"x" * 1000)

    run_within(20, big_dump)
    run_within(20, small_dump)
    assert not (tmp_path / "artifact.zst").exists()


def test_a_pipe_held_open_after_the_dump_returned_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receiver, "_END_OF_STREAM_SECONDS", 0.5)
    left_open: list[int] = []

    def leaky_dump() -> None:
        with (
            pytest.raises(OperationFailed, match="still holds its pipe open"),
            receive(piped(tmp_path), tmp_path / "artifact.zst", "zstd", None) as received,
        ):
            left_open.append(os.open(received.pipe, os.O_WRONLY))  # a child left running

    try:
        run_within(20, leaky_dump)
    finally:
        for fd in left_open:
            os.close(fd)
    assert not (tmp_path / "artifact.zst").exists()
