"""What snapctl knows of the side databases it keeps on servers between commands: prepared
copies (a snapshot loaded ahead of time, for an instant restore) and retired databases (what
an instant restore swapped out, to drop in the background).

One small JSON record per side database, in a private directory of the user's
(``SNAPCTL_STATE_DIR``, else the user state directory), written before the side database is
made, so that a kill at any moment leaves a record to clean up after. A preparation holds an
exclusive lock on its record's lock file while it runs: the kernel releases it when the
process dies, so "still being prepared" never rests on a process id. Records are ours alone
(a private directory, files opened without following links), and a record only ever names a
database that its connector checks again before touching it (owner, name and mark).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from snapctl.connectors.api import PreparedCopy
from snapctl.errors import ConfigurationError

Kind = Literal["prepared", "retired"]
# "interrupted": shown for a preparation whose process is gone (never written).
State = Literal["preparing", "ready", "interrupted"]
_RECORD_LIMIT = 256 * 1024
_SUFFIX = ".json"


def state_dir() -> Path:
    """``SNAPCTL_STATE_DIR``, else the user state directory's ``snapctl``; made private, and
    refused unless it is a directory of ours that nobody else can write."""
    explicit = os.environ.get("SNAPCTL_STATE_DIR")
    if explicit:
        root = Path(explicit).expanduser()
    else:
        import platformdirs

        root = platformdirs.user_state_path("snapctl")
    path = root / "copies"
    from snapctl.store.files import is_private_dir, make_private_dirs

    make_private_dirs(path)
    if not is_private_dir(path):
        raise ConfigurationError(
            f"{path} (where snapctl records its prepared copies) is not a private directory "
            "of yours (mode 0700, owned by you); remove it, or set SNAPCTL_STATE_DIR"
        )
    return path


def database_key(identity: Mapping[str, str]) -> str:
    """A short name for a database (vendor, name, host, port), for record file names."""
    return hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CopyRecord:
    """One side database: which database it belongs to, what it holds, and how far it is."""

    kind: Kind
    state: State
    alias: str
    database: dict[str, str]
    connector: str
    mark: str = ""
    snapshot: str = ""
    label: str | None = None
    sha256: str = ""
    copy: dict[str, Any] = field(default_factory=dict)  # PreparedCopy, once known
    started: float = field(default_factory=time.time)
    seconds: float | None = None  # how long the preparation took
    estimate: float | None = None  # how long it was expected to take
    pid: int | None = None  # the process preparing it
    token: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def key(self) -> str:
        return database_key(self.database)

    @property
    def file_name(self) -> str:
        return f"{self.key}.{self.token}{_SUFFIX}"

    @property
    def prepared_copy(self) -> PreparedCopy:
        """The side database, as its connector knows it (by mark alone, before it is named)."""
        return PreparedCopy(
            str(self.copy.get("name") or ""),
            self.mark,
            self.copy.get("size"),
            dict(self.copy.get("metadata") or {}),
        )

    def with_copy(self, copy: PreparedCopy, **changes: Any) -> CopyRecord:
        return replace(self, copy=asdict(copy), **changes)

    @property
    def size(self) -> int | None:
        size = self.copy.get("size")
        return size if isinstance(size, int) else None


def _from_json(data: Any) -> CopyRecord | None:
    """A record as written, or None for anything else: a damaged record is cleaned up."""
    try:
        record = CopyRecord(**data)
    except TypeError:
        return None
    texts = (record.alias, record.connector, record.mark, record.snapshot, record.sha256)
    if (
        record.kind not in ("prepared", "retired")
        or record.state not in ("preparing", "ready")
        or not all(isinstance(value, str) for value in texts)
        or not isinstance(record.database, dict)
        or not isinstance(record.copy, dict)
        or not isinstance(record.token, str)
        or not record.token.isalnum()
    ):
        return None
    return record


class Records:
    """The records in one state directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_dir()

    def all(self) -> list[CopyRecord]:
        from snapctl.store.files import read_regular_file

        found = []
        for path in sorted(self.root.glob(f"*{_SUFFIX}")):
            with contextlib.suppress(OSError, ValueError, Exception):
                record = _from_json(json.loads(read_regular_file(path, _RECORD_LIMIT)))
                if record is not None and path.name == record.file_name:
                    found.append(record)
        return found

    def of_database(self, identity: Mapping[str, str]) -> list[CopyRecord]:
        key = database_key(identity)
        return [record for record in self.all() if record.key == key]

    def write(self, record: CopyRecord) -> None:
        """Write the record whole (a new file renamed over the old one) and flush it."""
        from snapctl.store.files import fsync_dir

        final = self.root / record.file_name
        temporary = final.with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(record), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        fsync_dir(self.root)

    def remove(self, record: CopyRecord) -> None:
        for path in (self.root / record.file_name, self._lock_path(record)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def last_seconds(self, identity: Mapping[str, str]) -> float | None:
        """How long the last preparation of this database took, if one finished here."""
        with contextlib.suppress(OSError, ValueError):
            return float((self.root / f"{database_key(identity)}.seconds").read_text())
        return None

    def remember_seconds(self, identity: Mapping[str, str], seconds: float) -> None:
        path = self.root / f"{database_key(identity)}.seconds"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{seconds:.3f}\n")

    def _lock_path(self, record: CopyRecord) -> Path:
        return self.root / f"{record.key}.{record.token}.lock"

    def hold(self, record: CopyRecord) -> int:
        """Lock ``record`` as under way; the lock lasts while the returned descriptor (or a
        copy of it, in a child process) is open."""
        fd = os.open(
            self._lock_path(record), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    @contextlib.contextmanager
    def working_on(self, record: CopyRecord) -> Iterator[None]:
        """Held by the process preparing ``record``: others see it as under way."""
        fd = self.hold(record)
        try:
            yield
        finally:
            os.close(fd)

    def under_way(self, record: CopyRecord) -> bool:
        """Whether a live process is preparing ``record`` (holds its lock)."""
        try:
            fd = os.open(self._lock_path(record), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def prepared_copies(records: list[CopyRecord], name: str) -> list[CopyRecord]:
    """The prepared copies (ready or under way) of the snapshot called ``name``."""
    return [r for r in records if r.kind == "prepared" and r.snapshot == name]
