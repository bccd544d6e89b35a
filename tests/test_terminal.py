"""At the terminal: progress on stderr only when it is a terminal, and NO_COLOR respected."""

from __future__ import annotations

import os
import re
import time

from helpers import EXIT_OK, Project, snapctl_on_terminal

COLOR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|9[0-7])(?:;[0-9;]*)?m")


def run_on_terminal(project: Project, *args: str, **env: str) -> tuple[int, str]:
    """Run snapctl with a pseudo-terminal as stdin, stdout and stderr; return what it showed."""
    terminal = {"TERM": "xterm-256color", "COLUMNS": "120", **env}
    with snapctl_on_terminal(project, *args, env=terminal) as (proc, primary):
        shown = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        code = proc.wait(timeout=60)
    return code, shown.decode("utf-8", "replace")


def test_progress_on_a_terminal(sqlite_project: Project) -> None:
    code, shown = run_on_terminal(sqlite_project, "dump")
    assert code == EXIT_OK, shown
    # zstd compresses as the dump arrives: one step, its bytes counted as they are written.
    assert "Dumping default" in shown and "Compressing default" not in shown
    assert re.search(r"\d+(\.\d+)? kB", shown)  # bytes written
    assert re.search(r"0:00:\d\d", shown)  # elapsed
    assert "/?" not in shown  # no total is known while dumping: bytes only
    code, shown = run_on_terminal(sqlite_project, "dump", "--compress", "gzip")
    assert code == EXIT_OK, shown
    assert "Dumping default" in shown and "Compressing default" in shown  # a second pass
    for compress in ("zstd", "none"):
        name = sqlite_project.dump("--compress", compress)
        code, shown = run_on_terminal(sqlite_project, "restore", "--yes", name)
        assert code == EXIT_OK, shown
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
        # Real bytes of real totals, and a rate: never "1/1 bytes" nor "0/?".
        for step in ("Verifying", "Restoring"):
            done = re.findall(step + r" default\s+([\d.]+)/([\d.]+) kB\s+([\d.]+) [kM]B/s", plain)
            assert done and done[-1][0] == done[-1][1] and float(done[-1][0]) > 10, plain
        assert "/?" not in plain and "bytes" not in plain, plain


def test_no_progress_in_a_pipe_or_when_quiet(sqlite_project: Project) -> None:
    piped = sqlite_project.snapctl("dump", check=True)
    assert "Dumping" not in piped.stderr and "\x1b" not in piped.stderr + piped.stdout
    code, shown = run_on_terminal(sqlite_project, "dump", "--quiet")
    assert code == EXIT_OK
    assert "Dumping" not in shown and "\x1b" not in shown


def test_no_color_is_respected(sqlite_project: Project) -> None:
    code, shown = run_on_terminal(sqlite_project, "dump")
    assert code == EXIT_OK and COLOR.search(shown)  # colors by default on a terminal...
    code, shown = run_on_terminal(sqlite_project, "dump", NO_COLOR="1")
    assert code == EXIT_OK and "Dumping default" in shown
    assert not COLOR.search(shown)  # ...and none with NO_COLOR
