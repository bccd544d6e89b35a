"""The named pipe that connectors dump into: what arrives is the artifact, whatever the
connector does with the pipe, and a failure to write it is the error reported."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest
import zstandard

from snapctl.receiver import receive

PAYLOAD = os.urandom(3 << 20) + b"snapctl " * 500_000  # several pipe buffers, part compressible


def unpack(path: Path, method: str) -> bytes:
    data = path.read_bytes()
    if method == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return gzip.decompress(data) if method == "gzip" else data


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_what_a_process_writes_into_the_pipe_is_the_artifact(tmp_path: Path, method: str) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / f"artifact.{method}"
    with receive(tmp_path / "dump.pipe", dest, method, None) as received:
        # A child process writing by itself, as pg_dump or mariadb-dump does.
        subprocess.run(["dd", f"if={source}", f"of={received.pipe}", "bs=64k"], check=True)
    assert unpack(dest, method) == PAYLOAD
    assert received.size == dest.stat().st_size
    assert received.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert dest.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "dump.pipe").exists()


def test_a_connector_that_never_opens_the_pipe_gives_an_empty_artifact(tmp_path: Path) -> None:
    dest = tmp_path / "artifact"
    with receive(tmp_path / "dump.pipe", dest, "none", None) as received:
        pass
    assert dest.read_bytes() == b""
    assert received.sha256 == hashlib.sha256(b"").hexdigest()


def test_a_connector_failing_before_it_opens_the_pipe_does_not_hang(tmp_path: Path) -> None:
    finished = threading.Event()

    def failing_dump() -> None:
        with (
            pytest.raises(RuntimeError, match="no connection"),
            receive(tmp_path / "dump.pipe", tmp_path / "artifact.zst", "zstd", None),
        ):
            raise RuntimeError("no connection")
        finished.set()

    worker = threading.Thread(target=failing_dump, daemon=True)
    worker.start()
    worker.join(20)
    assert finished.is_set(), "receive() hung on a pipe nobody opened"
    assert not (tmp_path / "artifact.zst").exists()


def test_a_failure_to_write_the_artifact_is_the_error_not_the_broken_pipe(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "missing-directory" / "artifact.zst"  # cannot be created
    with (
        pytest.raises(FileNotFoundError),
        receive(tmp_path / "dump.pipe", dest, "zstd", None) as received,
        open(received.pipe, "wb") as pipe,
    ):
        for _ in range(64):  # far more than the pipe holds: the write must fail
            pipe.write(PAYLOAD[: 1 << 20])
