"""What a pg_dump custom-format archive says about itself: its versions, the roles owning its
objects, and the encoding and locale of the database it was taken of. The archive's text
never runs: values are read and quoted again."""

from __future__ import annotations

import os
import re
from pathlib import Path

from snapctl.connectors import _process
from snapctl.connectors.postgres.quoting import literal
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed

ARCHIVE_MAGIC = b"PGDMP"
ARCHIVE_HEAD = 4096  # enough for the header: magic, versions, time, database name


def archive_versions(header: bytes) -> tuple[str, str]:
    """(server version, pg_dump version) from the start of a custom-format archive, where
    pg_dump records both: no query and no ``pg_dump --version`` needed for the metadata."""

    def read_int(at: int) -> tuple[int, int]:
        sign, raw = header[at], header[at + 1 : at + 1 + int_size]
        value = int.from_bytes(raw, "little")
        return (-value if sign else value), at + 1 + int_size

    def read_str(at: int) -> tuple[str, int]:
        length, at = read_int(at)
        if length < 0:
            return "", at
        return header[at : at + length].decode("utf-8", "replace"), at + length

    try:
        if not header.startswith(ARCHIVE_MAGIC):
            raise ValueError("no archive magic")
        at = len(ARCHIVE_MAGIC)
        version = (header[at], header[at + 1])
        int_size = header[at + 3]
        at += 6  # major, minor, revision, int size, offset size, format
        if version >= (1, 15):
            at += 1  # the compression algorithm, one byte
        else:
            _, at = read_int(at)  # the compression level
        for _ in range(7):  # the creation time: seconds ... year, isdst
            _, at = read_int(at)
        _, at = read_str(at)  # the database name
        if version < (1, 10):
            raise ValueError("archive too old to record versions")
        server, at = read_str(at)
        dumper, at = read_str(at)
    except (IndexError, ValueError) as exc:
        raise OperationFailed(f"cannot read the pg_dump archive's header: {exc}") from exc
    return server, f"pg_dump (PostgreSQL) {dumper}"


def archive_owners(pg_restore: str, src: Path) -> set[str]:
    """The roles that own objects in the archive (last field of each ``pg_restore -l`` line)."""
    try:
        listing = _process.run([pg_restore, "-l", str(src)], what="reading the snapshot")
    except OperationFailed as exc:
        if "unsupported version" in str(exc):
            raise ConfigurationError(
                f"{exc}; this pg_restore is older than the pg_dump that made the snapshot, "
                "install a newer postgresql-client"
            ) from exc
        raise
    owners = set()
    for line in listing.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        owner = line.rsplit(" ", 1)[-1]
        if owner and owner != "-":
            owners.add(owner)
    return owners


def check_archive(
    path: Path,
    message: str = "not a pg_dump custom-format archive; it cannot be restored by the "
    "postgres connector",
    error: type[Exception] = IntegrityError,
) -> None:
    with open(path, "rb") as handle:
        if handle.read(len(ARCHIVE_MAGIC)) != ARCHIVE_MAGIC:
            raise error(f"{path.name}: {message}")


# What CREATE DATABASE may take over from the one pg_dump wrote into the archive.
_DATABASE_OPTIONS = re.compile(
    r"\b(ENCODING|LOCALE_PROVIDER|LOCALE|LC_COLLATE|LC_CTYPE|ICU_LOCALE|ICU_RULES|BUILTIN_LOCALE)"
    r" = ('(?:[^']|'')*'|\w+)"
)
_LOCALE_PROVIDERS = ("libc", "icu", "builtin")


def archive_database_options(pg_restore: str, src: Path) -> list[str]:
    """The encoding and locale of the database the snapshot was taken of, as CREATE DATABASE
    options: from the CREATE DATABASE that pg_dump writes into every archive (shown by
    ``pg_restore --create`` with an empty list of entries, without reading the data). Each
    value is taken apart and quoted again: the archive's text never runs. None found (an
    unusual archive): the server's defaults."""
    try:
        script = _process.run(
            [pg_restore, "--create", "--use-list", os.devnull, "--file", "-", str(src)],
            what="reading the snapshot's encoding and locale",
        )
    except OperationFailed:
        return []
    line = next((ln for ln in script.splitlines() if ln.startswith("CREATE DATABASE ")), "")
    _, found, tail = line.rpartition(" WITH TEMPLATE = template0 ")
    options = []
    for key, value in _DATABASE_OPTIONS.findall(tail if found else ""):
        if value.startswith("'"):
            unquoted = value[1:-1].replace("''", "'")
            options.append(f"{key} {literal(unquoted)}")
        elif key == "LOCALE_PROVIDER" and value in _LOCALE_PROVIDERS:
            options.append(f"{key} {value}")
    return options
