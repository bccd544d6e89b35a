"""Running the engines' tools: how a failure is reported (one line, its cause, no secret),
and a tool's output moved into a file or a named pipe."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from snapctl.connectors._process import run_into, tool_failure
from snapctl.errors import OperationFailed


def test_a_tool_killed_by_a_signal_says_which() -> None:
    failure = tool_failure("pg_dump of 'default'", -signal.SIGXFSZ, "", ["pw"])
    assert str(failure) == ("pg_dump of 'default' was killed by SIGXFSZ (file size limit exceeded)")


def test_a_silent_failure_says_so() -> None:
    failure = tool_failure("mariadb-dump of 'default'", 2, "\n\n", [])
    assert str(failure) == "mariadb-dump of 'default' failed with exit status 2 and no message"


def test_the_error_line_keeps_its_detail_and_hides_secrets() -> None:
    stderr = (
        'pg_dump: error: Dumping the contents of table "t" failed: PQgetResult() failed.\n'
        "pg_dump: detail: Error message from server: FATAL: terminating connection; pw=s3cret\n"
        "pg_dump: detail: Command was: COPY t TO stdout;\n"
    )
    message = str(tool_failure("pg_dump", 1, stderr, ["s3cret"]))
    assert message.startswith("pg_dump failed (exit 1): pg_dump: error: Dumping the contents")
    assert "terminating connection" in message
    assert "s3cret" not in message and "***" in message
    assert "\n" not in message


# --- a tool's output into a file or a named pipe ---------------------------------------------

WRITER = ["python3", "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)) * 40000)"]


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
def test_run_into_moves_every_byte_and_returns_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, splice: bool
) -> None:
    if not splice:
        monkeypatch.delattr(os, "splice", raising=False)
    dest = tmp_path / "out"
    head = run_into(WRITER, dest, what="writer", head=300)
    assert head == (bytes(range(256)) * 2)[:300]
    assert dest.read_bytes() == bytes(range(256)) * 40000


def test_run_into_a_named_pipe(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    run_into(WRITER, pipe, what="writer", head=10)
    reader.join(10)
    assert received == [bytes(range(256)) * 40000]


def test_run_into_reports_the_tools_failure(tmp_path: Path) -> None:
    failing = ["sh", "-c", "printf PGDMP; echo 'pg_dump: error: no such database' >&2; exit 1"]
    with pytest.raises(OperationFailed, match="pg_dump: error: no such database"):
        run_into(failing, tmp_path / "out", what="pg_dump", head=100)


def test_run_into_ends_the_tool_when_the_pipe_is_closed(tmp_path: Path) -> None:
    """The receiving end gone (the store's disk full, say): the tool is ended, not left
    writing into nothing, and the write error is raised."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    endless = ["python3", "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)"]

    def read_a_little() -> None:
        with open(pipe, "rb") as handle:
            handle.read(100)

    reader = threading.Thread(target=read_a_little)
    reader.start()
    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        run_into(endless, pipe, what="endless", head=10)
    reader.join(10)
    assert time.monotonic() - started < 10
