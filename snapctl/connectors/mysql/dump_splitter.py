"""Cutting a dump script, streaming, at the comment headers the dump tool writes, into segments
that load the same database in parallel: every CREATE TABLE, then each costly table's rows,
then triggers, routines, events and views. Memory stays bounded."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# The dump tool starts each part of the script with a comment header. Only these move lines
# to another segment; any other comment stays where it is.
_SECTIONS = (
    (b"-- Table structure for table ", "schema"),
    (b"-- Temporary table structure for view ", "schema"),  # a placeholder, for references
    (b"-- Dumping data for table ", "data"),
    (b"-- Dumping events for database ", "post"),
    (b"-- Dumping routines for database ", "post"),
    (b"-- Final view structure for view ", "post"),
)
_END_OF_ROWS = b"UNLOCK TABLES;"  # closes a table's rows; its triggers follow
_BLOCK = 1 << 20  # bytes read at once, and the longest piece of a line held in memory
# A row costs the server about as much as this many bytes of it (measured on MariaDB 10.11:
# narrow tables with secondary indexes load slower than their size suggests). Rows are
# counted as lines: MariaDB writes one a line; MySQL's long lines leave only the size.
_ROW_COST = 500
_BUNDLE_BELOW = 4 << 20  # tables cheaper than this share one session


def _section_kind(line: bytes) -> str | None:
    for prefix, kind in _SECTIONS:
        if line.startswith(prefix):
            return kind
    return None


def _section_name(line: bytes) -> str:
    """The object a header names, for messages: "-- Dumping data for table `t`" -> `t`."""
    return line.rstrip(b"\r\n").split(b" ", 5)[-1].decode("utf-8", "replace")


class _Unsplittable(Exception):
    """The dump is not laid out as the splitter expects: load it whole."""


class _Reader:
    """A dump read in blocks: line by line (a line longer than a block comes in pieces, so
    memory stays bounded), or, for rows, straight through to the next line of interest."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.buffer = b""
        self.pos = 0
        self.at_line_start = True  # whether the next piece starts a line

    def _fill(self) -> bool:
        block = self.handle.read(_BLOCK)
        self.buffer = self.buffer[self.pos :] + block
        self.pos = 0
        return bool(block)

    def piece(self) -> bytes:
        """The next line, or the next block of a long one; b"" at the end."""
        while True:
            end = self.buffer.find(b"\n", self.pos)
            if end >= 0 or len(self.buffer) - self.pos >= _BLOCK or not self._fill():
                stop = end + 1 if end >= 0 else min(len(self.buffer), self.pos + _BLOCK)
                piece = self.buffer[self.pos : stop]
                self.pos = stop
                self.at_line_start = piece.endswith(b"\n")
                return piece

    def copy_rows(self, rows: _Rows) -> None:
        """Copy to ``rows`` up to the next line starting ``UNLOCK TABLES;`` (or the end),
        without looking at each line: no row can start a line so, as every line of rows
        starts with ``(`` or ``INSERT`` and newlines inside values are escaped."""
        if not self.at_line_start:
            return
        stop = b"\n" + _END_OF_ROWS
        while True:
            if len(self.buffer) - self.pos < len(_END_OF_ROWS) and not self._fill():
                self._copy_to(rows, len(self.buffer))
                return
            if self.buffer.startswith(_END_OF_ROWS, self.pos):
                return
            found = self.buffer.find(stop, self.pos)
            if found >= 0:
                self._copy_to(rows, found + 1)
                return
            # Keep the end of the block: the stop may straddle two.
            self._copy_to(rows, len(self.buffer) - len(_END_OF_ROWS))
            if not self._fill():
                self._copy_to(rows, len(self.buffer))
                return

    def _copy_to(self, rows: _Rows, end: int) -> None:
        lines = self.buffer.count(b"\n", self.pos, end)
        rows.write(memoryview(self.buffer)[self.pos : end], lines)
        self.pos = end


@dataclass
class _Rows:
    """A script of table rows being written, and what loading it costs, roughly."""

    names: list[str]  # its tables
    path: Path
    out: BinaryIO
    rows: int = 0
    size: int = 0
    locked: bool = False  # past LOCK TABLES: the rows follow, up to UNLOCK TABLES

    @property
    def label(self) -> str:
        more = f" and {len(self.names) - 3} more tables" if len(self.names) > 3 else ""
        return ", ".join(self.names[:3]) + more

    def write(self, data: bytes | memoryview, rows: int = 0) -> None:
        self.out.write(data)
        self.size += len(data)
        self.rows += rows

    @property
    def cost(self) -> int:
        return self.size + _ROW_COST * self.rows


@dataclass
class Segments:
    """A dump cut into scripts that load the same database: ``schema`` (every CREATE TABLE,
    and placeholder views), then ``data`` (one script per costly table's rows, the others'
    together; costliest first; any order gives the same result), then ``post`` (triggers,
    routines, events, final views). Each starts with the dump's own session settings
    (character set, time zone, sql_mode, unique and foreign key checks off)."""

    schema: Path
    data: list[_Rows]
    post: Path


class _Splitter:
    """Routes the dump's lines to segment files as they stream past: never the whole dump in
    memory, and each byte written once (but cheap tables' rows, copied into the bundle)."""

    def __init__(self, workdir: Path, stack: contextlib.ExitStack) -> None:
        self.workdir = workdir
        self.stack = stack
        self.prelude = bytearray()
        self.started = False  # past the prelude
        self.in_program = False  # between DELIMITER ;; and DELIMITER ;: bodies, not headers
        self.schema = self._open("schema.sql")
        self.post = self._open("post.sql")
        self.current = self.schema  # where lines go outside a table's rows
        self.table: _Rows | None = None  # the rows being written, if any
        self.tables: list[_Rows] = []
        self.bundle: _Rows | None = None

    def _open(self, name: str) -> BinaryIO:
        return self.stack.enter_context(open(self.workdir / name, "wb", buffering=_BLOCK))

    def line(self, line: bytes, at_line_start: bool) -> None:
        if at_line_start and not self.in_program:
            kind = _section_kind(line)
            if kind is not None:
                self._switch(kind, line)
            elif line.startswith(b"DELIMITER ") and line.strip() != b"DELIMITER ;":
                self.in_program = True
        elif at_line_start and line.strip() == b"DELIMITER ;":
            self.in_program = False
        if not self.started:
            self.prelude += line
            if len(self.prelude) > _BLOCK:
                raise _Unsplittable  # no header where the dump tool puts one
        elif self.table is None:
            self.current.write(line)
        else:
            self._table_line(self.table, line, at_line_start)

    def _table_line(self, table: _Rows, line: bytes, at_line_start: bool) -> None:
        table.write(line)
        if not at_line_start:
            return
        if line.startswith(b"LOCK TABLES "):
            table.locked = True
        elif line.startswith(b"INSERT") and not table.locked:
            raise _Unsplittable  # rows without LOCK TABLES: no UNLOCK to find their end by
        elif line.startswith(_END_OF_ROWS):
            self._end_table()
            self.current = self.post  # the table's triggers come next

    def _switch(self, kind: str, header: bytes) -> None:
        if not self.started:
            self.started = True
            self.schema.write(self.prelude)
            self.post.write(self.prelude)
        self._end_table()
        if kind == "data":
            self._start_table(_section_name(header))
        else:
            self.current = self.schema if kind == "schema" else self.post

    def _start_table(self, name: str) -> None:
        path = self.workdir / f"rows-{len(self.tables)}.sql"
        out = open(path, "wb", buffering=_BLOCK)  # noqa: SIM115 - closed by _end_table
        out.write(self.prelude)
        self.table = _Rows([name], path, out)

    def _end_table(self) -> None:
        """Close a table's rows; if they are cheap, move them into the bundle."""
        table, self.table = self.table, None
        if table is None:
            return
        table.out.close()
        if table.cost >= _BUNDLE_BELOW:
            self.tables.append(table)
            return
        if self.bundle is None:
            path = self.workdir / "rows-small.sql"
            self.bundle = _Rows([], path, self._open(path.name))
            self.bundle.out.write(self.prelude)
        self.bundle.names += table.names
        with open(table.path, "rb") as rows:
            rows.seek(len(self.prelude))
            shutil.copyfileobj(rows, self.bundle.out)
        self.bundle.size += table.size
        self.bundle.rows += table.rows
        table.path.unlink()

    def close(self) -> None:
        if self.table is not None:
            self.table.out.close()

    def finish(self) -> Segments | None:
        """The segments, or None when the dump is not laid out as expected."""
        self._end_table()
        data = self.tables + ([self.bundle] if self.bundle is not None else [])
        if not self.started or self.in_program or not data:
            return None
        data.sort(key=lambda rows: rows.cost, reverse=True)
        return Segments(self.workdir / "schema.sql", data, self.workdir / "post.sql")


def split_dump(src: Path, workdir: Path) -> Segments | None:
    """Cut a dump into segments in ``workdir``, streaming; None if its layout is unknown."""
    with open(src, "rb") as handle, contextlib.ExitStack() as stack:
        reader, splitter = _Reader(handle), _Splitter(workdir, stack)
        stack.callback(splitter.close)
        try:
            while True:
                at_line_start = reader.at_line_start
                piece = reader.piece()
                if not piece:
                    return splitter.finish()
                splitter.line(piece, at_line_start)
                if splitter.table is not None and splitter.table.locked:
                    reader.copy_rows(splitter.table)
        except _Unsplittable:
            return None
