"""Loading a dump's script into a side database: whole, or split for a parallel load. A
restore's scratch database and a prepared copy are loaded alike. See docs/mysql.md."""

from __future__ import annotations

import shutil
from pathlib import Path

from snapctl.connectors.mysql.dump_splitter import split_dump
from snapctl.connectors.mysql.session import Client

# Smaller scripts load whole, in one session: splitting them and starting a session per part
# costs more than the parallel load saves (two more client programs, 10-20 ms).
SPLIT_FROM = 4 * 1024 * 1024


def load_dump(client: Client, src: Path, database: str, workdir: Path, jobs: int) -> None:
    """Load the snapshot's script into ``database``: whole in one session (a small one, or
    ``jobs=1``), or split into segments in ``workdir`` (tables, then their rows by ``jobs``
    sessions at once, then the rest)."""
    what = f"loading the snapshot into '{database}'"
    parts = workdir / "segments"
    parts.mkdir()
    try:
        try:
            split = jobs > 1 and src.stat().st_size >= SPLIT_FROM
            segments = split_dump(src, parts) if split else None
        except OSError:  # no room for the segments, say: the whole script needs none
            segments = None
        if segments is None:
            client.load(src, database, what)
            return
        client.load(segments.schema, database, f"{what} (tables)")
        rows = [(f"{what} (rows of {rows.label})", rows.path) for rows in segments.data]
        client.load_parallel(rows, database, jobs)
        client.load(segments.post, database, f"{what} (views and programs)")
    finally:
        shutil.rmtree(parts, ignore_errors=True)  # as large as the dump: free it now
