"""The snapshot store: names, manifests, checksums, atomic writes and lookup.

A snapshot is a directory ``<UTC timestamp>[-<label>]`` holding one artifact per database
alias and ``manifest.json``. It is assembled in a hidden temporary sibling and renamed into
place only when complete, so a dump that dies never leaves anything ``list`` shows or
``restore`` accepts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from snapctl import compression, locks, receiver
from snapctl import manifest_fields as fields
from snapctl.errors import (
    ConfigurationError,
    IntegrityError,
    OperationFailed,
    SnapshotNotFound,
)
from snapctl.receiver import Received

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A manifest lists a few databases: far below this, which bounds what a planted one costs.
MAX_MANIFEST = 1024 * 1024
TEMP_PREFIX = ".tmp-"
LATEST = "latest"

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME = re.compile(r"(\d{8}T\d{6}\.\d{3}Z)(?:-(" + _LABEL.pattern + r"))?")
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S"


def validate_label(label: str) -> str:
    if not _LABEL.fullmatch(label):
        raise ConfigurationError(
            f"invalid label {label!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return label


def snapshot_name(created: datetime, label: str | None) -> str:
    """A sortable name: the UTC time to the millisecond, then the label if any."""
    stamp = created.strftime(_TIMESTAMP_FORMAT) + f".{created.microsecond // 1000:03d}Z"
    return f"{stamp}-{label}" if label else stamp


def is_snapshot_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def _label_of(name: str) -> str | None:
    """The label a snapshot's name carries: all of it after the time, never a tail of it
    (``b`` is not the label of ``...Z-fooZ-b``)."""
    match = _NAME.fullmatch(name)
    return match.group(2) if match else None


@dataclass(frozen=True)
class Artifact:
    """One database alias inside a snapshot."""

    alias: str
    file: str
    compression: str
    size: int
    sha256: str
    connector: str
    connector_source: str
    connector_class: str
    engine: str
    vendor: str
    server_version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # What the artifact unpacks to: unpacking stops past it. None in older snapshots.
    unpacked_size: int | None = None
    # Which database it is of (django_env.database_identity). None in older snapshots.
    database: dict[str, str] | None = None

    def is_of(self, identity: dict[str, str]) -> bool:
        """Whether this artifact was taken of the database ``identity`` names (taken to be
        so when an older snapshot does not say)."""
        return self.database is None or self.database == identity

    @property
    def database_name(self) -> str:
        """The database's NAME for people: a SQLite file's name, a server database's name."""
        if self.database is None:
            return "?"
        name = self.database.get("name", "")
        return Path(name).name if self.database.get("vendor") == "sqlite" else name

    @property
    def server_size(self) -> int:
        """Bytes the connector keeps outside the artifact (a copy of the database on the
        server), as its metadata's ``server_size`` says; 0 if it keeps none."""
        value = self.metadata.get("server_size")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "unpacked_size": self.unpacked_size,
            "file": self.file,
            "compression": self.compression,
            "size": self.size,
            "sha256": self.sha256,
            "connector": {
                "name": self.connector,
                "source": self.connector_source,
                "class": self.connector_class,
            },
            "engine": self.engine,
            "vendor": self.vendor,
            "server_version": self.server_version,
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, alias: str, data: dict[str, Any]) -> Artifact:
        """Read strictly: a field of the wrong type is a :class:`MalformedManifest`."""
        where = f"databases.{alias}."
        method = fields.one_of(data, "compression", tuple(compression.SUFFIXES), where)
        file = fields.text(data, "file", where)
        if (
            Path(file).name != file
            or file.startswith(".")
            or not file.endswith(compression.SUFFIXES[method])
        ):
            raise fields.MalformedManifest(
                f"{where}file {file!r} is not a plain file name ending as its compression does"
            )
        connector = fields.mapping(data, "connector", where)
        return cls(
            alias=alias,
            file=file,
            compression=method,
            size=fields.whole_number(data, "size", where),
            sha256=fields.sha256(data, "sha256", where),
            connector=fields.name(connector, "name", f"{where}connector."),
            connector_source=fields.text(connector, "source", f"{where}connector."),
            connector_class=fields.text(connector, "class", f"{where}connector."),
            engine=fields.text(data, "engine", where),
            vendor=fields.name(data, "vendor", where),
            server_version=fields.optional_text(data, "server_version", where),
            metadata=fields.mapping(data, "metadata", where) if "metadata" in data else {},
            unpacked_size=fields.optional_whole_number(data, "unpacked_size", where),
            database=_database(data, where),
        )


IDENTITY_KEYS = ("vendor", "name", "host", "port")


def _database(data: dict[str, Any], where: str) -> dict[str, str] | None:
    """The ``database`` an artifact records: its vendor, name, host and port, as strings."""
    if data.get("database") is None:
        return None
    database = fields.mapping(data, "database", where)
    return {key: fields.text(database, key, f"{where}database.") for key in IDENTITY_KEYS}


@dataclass(frozen=True)
class Snapshot:
    name: str
    path: Path
    created: datetime
    label: str | None
    snapctl_version: str
    django_version: str
    artifacts: dict[str, Artifact]

    @property
    def size(self) -> int:
        return sum(artifact.size for artifact in self.artifacts.values())

    @property
    def server_size(self) -> int:
        """Bytes its connectors keep outside the snapshot (see Artifact.server_size)."""
        return sum(artifact.server_size for artifact in self.artifacts.values())


def _private_group(gid: int) -> bool:
    """Whether group ``gid`` is the user's own private group (Debian and Ubuntu give each
    user one, and a umask of 002 then makes new files group-writable harmlessly)."""
    import grp
    import pwd

    try:
        group = grp.getgrgid(gid)
        user = pwd.getpwuid(os.getuid())
    except KeyError:
        return False
    return gid == user.pw_gid and group.gr_name == user.pw_name and not group.gr_mem


def _has_acl(path: Path) -> bool:
    """Whether ``path`` has a POSIX ACL: its mode's group bits then stand for the most any
    named user or group gets, so group-write may mean another user's write."""
    try:
        return "system.posix_acl_access" in os.listxattr(path, follow_symlinks=False)
    except (OSError, AttributeError):  # no extended attributes here: no ACL
        return False


def _make_private_dirs(path: Path) -> None:
    """Make ``path`` and its missing parents, each 0700 whatever the umask: ``mkdir -p``
    would give the parents the umask's mode, readable by everyone."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another snapctl made it meanwhile
            directory.mkdir(mode=0o700)
            directory.chmod(0o700)


def _not_a_regular_file(path: Path) -> IntegrityError:
    return IntegrityError(
        f"artifact {path.name} of snapshot {path.parent.name} is missing or not a regular "
        "file (a link, a pipe, ...); restore another snapshot"
    )


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes. A snapshot
    is input from outside: a symlink (to /dev/zero, say) or a named pipe planted as a
    manifest must neither exhaust memory nor hang ``list``. Opened without following a link
    and without blocking on a pipe, then checked, then read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise IntegrityError(f"{path} is not a regular file; remove it")
        if status.st_size > limit:
            raise IntegrityError(f"{path} is {status.st_size} bytes, more than {limit}; remove it")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise IntegrityError(f"{path} grew past {limit} bytes while read; remove it")
    return data


def _parse_manifest(path: Path) -> Snapshot:
    manifest = path / MANIFEST
    try:
        data = json.loads(read_regular_file(manifest, MAX_MANIFEST).decode("utf-8"))
    except FileNotFoundError as exc:
        raise IntegrityError(f"snapshot {path.name} has no {MANIFEST}") from exc
    except IntegrityError as exc:
        raise IntegrityError(f"snapshot {path.name}: {exc}") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise IntegrityError(
                f"snapshot {path.name}: {MANIFEST} is a symbolic link; remove the snapshot"
            ) from exc
        raise IntegrityError(f"snapshot {path.name}: {MANIFEST} is unreadable: {exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise IntegrityError(
            f"snapshot {path.name}: {MANIFEST} is unreadable ({type(exc).__name__})"
        ) from exc
    try:
        return _snapshot_from_json(path, data)
    except fields.MalformedManifest as exc:
        raise IntegrityError(f"snapshot {path.name}: {MANIFEST} is malformed: {exc}") from exc
    except (TypeError, ValueError, OverflowError) as exc:  # a number too large, say
        raise IntegrityError(
            f"snapshot {path.name}: {MANIFEST} is malformed ({type(exc).__name__})"
        ) from exc


def _snapshot_from_json(path: Path, data: Any) -> Snapshot:
    """The snapshot a parsed manifest describes, every field checked (manifest_fields.py).
    Its time must be the one its name gives, so that the name orders snapshots as their
    times do, for ``latest``, ``list`` and ``prune`` alike."""
    if not isinstance(data, dict):
        raise fields.MalformedManifest("it is not an object")
    version = fields.whole_number(data, "format_version")
    if version != FORMAT_VERSION:
        raise IntegrityError(
            f"snapshot {path.name} has format version {version}, this snapctl reads "
            f"version {FORMAT_VERSION}; use a snapctl that matches"
        )
    if fields.text(data, "name") != path.name:
        raise IntegrityError(
            f"snapshot {path.name}: its manifest names it {data['name']!r}; "
            "it was renamed or tampered with"
        )
    label = fields.optional_text(data, "label")
    created_text = fields.text(data, "created")
    try:
        created = datetime.fromisoformat(created_text)
    except ValueError:
        raise fields.MalformedManifest(f"created {created_text!r} is not a time") from None
    if created.tzinfo is None:  # a naive time cannot be ordered among the others
        raise fields.MalformedManifest(f"created {created_text!r} has no time zone")
    if snapshot_name(created.astimezone(timezone.utc), label) != path.name:
        raise fields.MalformedManifest(
            f"created {created_text!r} and label {label!r} do not give the name {path.name}"
        )
    databases = fields.mapping(data, "databases")
    if not databases:
        raise fields.MalformedManifest("databases is empty")
    artifacts = {}
    for alias, entry in databases.items():
        fields.plain_name(alias, "database alias")
        if not isinstance(entry, dict):
            raise fields.MalformedManifest(f"databases.{alias} is not an object")
        artifacts[alias] = Artifact.from_json(alias, entry)
    if len({artifact.file for artifact in artifacts.values()}) != len(artifacts):
        raise fields.MalformedManifest("two databases name the same file")
    return Snapshot(
        name=path.name,
        path=path,
        created=created,
        label=label,
        snapctl_version=fields.text(data, "snapctl_version"),
        django_version=fields.text(data, "django_version"),
        artifacts=artifacts,
    )


def damaged(snapshot: Snapshot, artifact: Artifact, problem: str) -> str:
    """The one message for a damaged artifact, from ``verify`` and ``restore`` alike."""
    return (
        f"snapshot {snapshot.name}: artifact {artifact.file} ({artifact.alias}) {problem}; "
        "it is damaged, restore another snapshot"
    )


def size_problem(snapshot: Snapshot, artifact: Artifact, stored: BinaryIO) -> str | None:
    """What is wrong with the size of the open artifact ``stored``, if anything."""
    size = os.fstat(stored.fileno()).st_size
    if size == artifact.size:
        return None
    return damaged(snapshot, artifact, f"is {size} bytes, its manifest says {artifact.size}")


def checksum_problem(snapshot: Snapshot, artifact: Artifact, sha256: str) -> str | None:
    """What is wrong with an artifact whose bytes hash to ``sha256``, if anything."""
    if sha256 == artifact.sha256:
        return None
    return damaged(snapshot, artifact, "fails its sha256 checksum")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def scratch_prefix() -> str:
    """Temporary directories in the store carry the owner's pid, so that leftovers of a
    killed process can be told from work in progress and removed."""
    return f"{TEMP_PREFIX}{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PendingSnapshot:
    """A snapshot being written in a private temporary directory."""

    def __init__(self, store: SnapshotStore, label: str | None) -> None:
        self.store = store
        self.label = label
        self.created = datetime.now(timezone.utc)
        self.path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=store.root))
        self.artifacts: dict[str, Artifact] = {}

    def scratch_path(self, alias: str, extension: str) -> Path:
        """Where a connector writes its uncompressed dump of ``alias``."""
        return self.path / f"{alias}.{extension}" if extension else self.path / alias

    @staticmethod
    def final_path(raw: Path, method: str) -> Path:
        """The artifact's file once compressed with ``method``."""
        return raw.with_name(raw.name + compression.SUFFIXES[method])

    def add(self, alias: str, raw: Path, method: str, level: int | None, **fields: Any) -> Artifact:
        """Compress (or keep) the connector's file, checksum it, and record it."""
        if not raw.exists():
            # A connector may keep its data elsewhere (a server-side copy, say) and return
            # only metadata; an empty artifact keeps the snapshot's shape and checksums.
            raw.touch()
        if not raw.is_file():
            raise IntegrityError(f"connector '{fields['connector']}' wrote no file for {alias}")
        if method == "none":
            final = raw
            size, digest = raw.stat().st_size, compression.file_sha256(raw)
            unpacked = size
            final.chmod(0o600)
            _fsync_file(final)
        else:
            final = self.final_path(raw, method)
            size, digest, unpacked = compression.compress(raw, final, method, level)
            raw.unlink()
        return self.record(alias, final, method, size, digest, unpacked_size=unpacked, **fields)

    @contextlib.contextmanager
    def receive(self, raw: Path, method: str, level: int | None) -> Iterator[Received | None]:
        """A named pipe beside ``raw`` for a connector to dump into, the artifact written,
        compressed, as the dump arrives (see receiver.py); None where no pipe can be made
        (a filesystem without them), and the connector then writes ``raw``."""
        pipe = raw.with_name(raw.name + ".pipe")
        if not receiver.make_pipe(pipe):
            yield None
            return
        with receiver.receive(pipe, self.final_path(raw, method), method, level) as received:
            yield received

    def record(
        self, alias: str, final: Path, method: str, size: int, digest: str, **fields: Any
    ) -> Artifact:
        """Record a complete artifact file, already private and flushed to disk."""
        artifact = Artifact(
            alias=alias, file=final.name, compression=method, size=size, sha256=digest, **fields
        )
        self.artifacts[alias] = artifact
        return artifact

    def commit(self, snapctl_version: str, django_version: str) -> Snapshot:
        """Write the manifest and move the snapshot into place atomically."""
        while True:
            name = snapshot_name(self.created, self.label)
            if not self.store.taken(name):
                self._write_manifest(name, snapctl_version, django_version)
                try:
                    # rename() never replaces a snapshot: it fails on a non-empty directory.
                    os.rename(self.path, self.store.root / name)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            # Another dump took this millisecond: the next one keeps names sortable.
            self.created += timedelta(milliseconds=1)
        _fsync_dir(self.store.root)
        self.path = self.store.root / name
        snapshot = _parse_manifest(self.path)
        self.store.publish(snapshot)
        return snapshot

    def _write_manifest(self, name: str, snapctl_version: str, django_version: str) -> None:
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "label": self.label,
            "created": self.created.isoformat(),
            "snapctl_version": snapctl_version,
            "django_version": django_version,
            "databases": {alias: a.to_json() for alias, a in self.artifacts.items()},
        }
        manifest_path = self.path / MANIFEST
        with open(manifest_path, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        manifest_path.chmod(0o600)
        _fsync_dir(self.path)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class SnapshotStore:
    """A directory of snapshots.

    A remote store (remote.py) keeps its snapshots elsewhere and uses ``root`` as local
    scratch space; the methods between here and ``ensure`` are where the two differ.
    """

    def __init__(self, root: Path, *, shared: bool = False) -> None:
        self.root = root
        # A shared team directory (opted into): others may own and write what is in it.
        self.shared = shared

    def check_owned(self, path: Path) -> None:
        """Refuse ``path`` (exit 3) unless it is the user's own and nobody else can write it:
        in a directory others can write, a snapshot planted there would be listed as newest
        and restored, and a file swapped after it was verified. A shared store skips this."""
        try:
            status = path.lstat()
        except FileNotFoundError:
            return  # what is missing is reported where it is needed
        if not stat.S_ISLNK(status.st_mode):  # a link's mode means nothing; never followed
            self._refuse_unless_owned(path, status)

    def _refuse_unless_owned(self, path: Path, status: os.stat_result) -> None:
        if self.shared:
            return
        if status.st_uid != os.getuid():
            problem = f"belongs to another user (uid {status.st_uid})"
        elif status.st_mode & 0o002 or (
            status.st_mode & 0o020 and (not _private_group(status.st_gid) or _has_acl(path))
        ):
            problem = "is writable by others"
        else:
            return
        raise IntegrityError(
            f"{path} {problem}; snapctl reads only what you alone can change: fix it "
            "(chown, chmod go-w), or pass --shared-store for a team directory you trust"
        )

    @contextlib.contextmanager
    def open_artifact(self, path: Path) -> Iterator[BinaryIO]:
        """The artifact at ``path``, opened once, never through a link nor waiting on a pipe,
        and refused (exit 3) unless it is the user's own regular file. Whatever reads it
        (the checksum, the unpacking) reads this one open file, so a file swapped in at
        ``path`` after the check is never what is used."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError) and exc.errno != errno.ELOOP:
                raise
            raise _not_a_regular_file(path) from exc
        with open(fd, "rb") as handle:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise _not_a_regular_file(path)
            self._refuse_unless_owned(path, status)
            os.set_blocking(fd, True)
            yield handle

    def link_privately(self, stored: BinaryIO, dest: Path) -> bool:
        """Give the open artifact ``stored`` the private name ``dest`` without copying it: a
        symbolic link to ``/proc/<pid>/fd/<n>``, through which this process and the tools
        it starts open the very file that was opened and hashed, whatever is renamed into
        the snapshot later. Only where nobody else can write that file (a shared store's is
        copied instead), and only with Linux's /proc: False elsewhere, and the caller
        copies."""
        if self.shared:
            return False
        opened = Path(f"/proc/{os.getpid()}/fd/{stored.fileno()}")
        try:
            if not os.path.samestat(opened.stat(), os.fstat(stored.fileno())):
                return False
            dest.symlink_to(opened)
        except OSError:
            return False
        return True

    def lock(self, *, shared: bool) -> contextlib.AbstractContextManager[None]:
        """The store's lock: shared while snapshots are read, exclusive while deleted."""
        return locks.store_lock(self.root, shared=shared)

    @property
    def where(self) -> str:
        """Where the snapshots are, for messages."""
        return str(self.root)

    def location(self, name: str) -> str:
        """Where one snapshot is, for messages and JSON."""
        return str(self.root / name)

    def taken(self, name: str) -> bool:
        return (self.root / name).exists()

    def publish(self, snapshot: Snapshot) -> None:
        """Called once a new snapshot is complete in ``root``; a local store has no more to
        do."""

    def fetch(self, snapshot: Snapshot) -> None:
        """Make the snapshot's artifacts readable under ``snapshot.path``; local ones are."""

    def ensure(self) -> None:
        try:
            _make_private_dirs(self.root)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create snapshot directory {self.root}: {exc.strerror}"
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ConfigurationError(f"snapshot directory {self.root} is not writable")
        self.clean_leftovers()

    def clean_leftovers(self) -> None:
        """Remove temporary directories of dumps whose process is gone (killed, crashed)."""
        for entry in self.root.glob(TEMP_PREFIX + "*"):
            pid_text = entry.name[len(TEMP_PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                if entry.is_symlink():
                    with contextlib.suppress(OSError):  # another user's, in a shared store
                        entry.unlink()  # removed, never followed
                else:
                    shutil.rmtree(entry, ignore_errors=True)

    @contextlib.contextmanager
    def new_snapshot(self, label: str | None) -> Iterator[PendingSnapshot]:
        """A snapshot under construction; removed unless committed inside the block."""
        self.ensure()
        pending = PendingSnapshot(self, label)
        try:
            yield pending
        finally:
            if pending.path.name.startswith(TEMP_PREFIX):
                pending.discard()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        self.check_owned(self.root)
        try:
            entries = list(self.root.iterdir())
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read snapshot directory {self.root}: {exc.strerror}"
            ) from exc
        return sorted(
            (
                p.name
                for p in entries
                if is_snapshot_name(p.name) and p.is_dir() and not p.is_symlink()
            ),
            reverse=True,
        )

    def load(self, name: str) -> Snapshot:
        self.check_owned(self.root / name)
        self.check_owned(self.root / name / MANIFEST)
        return _parse_manifest(self.root / name)

    def snapshots(self) -> list[Snapshot]:
        """Every complete, readable snapshot, newest first (in the order of their names,
        which ``latest`` follows too: a manifest's time must agree with its name); broken
        ones are left out."""
        snapshots = []
        for name in self.names():
            with contextlib.suppress(IntegrityError):
                snapshots.append(self.load(name))
        return snapshots

    def resolve(self, reference: str | None) -> Snapshot:
        """A snapshot by full name, label, unique prefix, or ``latest`` (also the default)."""
        return self.load(self.resolve_name(reference))

    def means_newest(self, reference: str | None) -> bool:
        """Whether ``reference`` means "the newest of some": ``latest`` (the default) or a
        label; not a snapshot's name nor a prefix of one."""
        if reference is None or reference == LATEST:
            return True
        names = self.names()
        return reference not in names and any(_label_of(n) == reference for n in names)

    def newest(self, reference: str | None, accept: Callable[[Snapshot], bool]) -> Snapshot | None:
        """The newest snapshot ``reference`` (``latest`` or a label) may mean that ``accept``
        takes, None if none does. A damaged one met on the way is an error, as for
        ``latest``: never a quiet step back past it."""
        for name in self.names():
            if reference in (None, LATEST) or _label_of(name) == reference:
                snapshot = self.load(name)
                if accept(snapshot):
                    return snapshot
        return None

    def resolve_name(self, reference: str | None) -> str:
        """The name a reference stands for, without reading the snapshot (it may be broken).

        Only names found in the directory are ever returned, so a reference cannot reach
        outside the store.
        """
        if reference is not None and not reference.strip():
            # An unset shell variable gives "", which as a prefix would match everything.
            raise SnapshotNotFound(
                "empty snapshot reference; give a snapshot name, a label, a unique prefix "
                "or 'latest'"
            )
        names = self.names()
        if reference is None or reference == LATEST:
            if not names:
                raise SnapshotNotFound(
                    f"no snapshots in {self.where}; take one with 'snapctl dump'"
                )
            # Strictly the newest: a damaged newest snapshot is an error, never a quiet
            # fallback to an older one.
            return names[0]
        if reference in names:
            return reference
        labelled = [name for name in names if _label_of(name) == reference]
        if labelled:
            return labelled[0]  # a label means the newest snapshot carrying it
        matches = [name for name in names if name.startswith(reference)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise SnapshotNotFound(
                f"snapshot reference '{reference}' is ambiguous; it matches: "
                + ", ".join(sorted(matches))
            )
        raise SnapshotNotFound(
            f"no snapshot '{reference}' in {self.where}; 'snapctl list' shows what there is"
        )

    def verify(self, name: str) -> list[str]:
        """Every problem of a snapshot: its manifest, then each artifact's presence, size and
        checksum. An empty list means it is whole."""
        with self.lock(shared=True):
            return self._problems(name)

    def _problems(self, name: str) -> list[str]:
        try:
            snapshot = self.load(name)
            self.fetch(snapshot)
        except IntegrityError as exc:
            return [str(exc)]
        problems = []
        for artifact in snapshot.artifacts.values():
            try:
                with self.open_artifact(snapshot.path / artifact.file) as stored:
                    problem = size_problem(snapshot, artifact, stored) or checksum_problem(
                        snapshot, artifact, compression.sha256_of(stored)
                    )
            except IntegrityError as exc:
                problem = f"snapshot {name}: {exc}"
            except OSError as exc:
                problem = damaged(snapshot, artifact, f"cannot be read: {exc.strerror}")
            if problem:
                problems.append(problem)
        return problems

    def delete(self, names: list[str], before: Callable[[str], None] | None = None) -> None:
        """Remove snapshots, each first renamed out of sight in one step, then deleted, so
        none is ever seen half-removed; never while another process reads the store.

        ``before(name)`` runs first for each, under the same lock; if it raises, that
        snapshot and the ones after it stay.
        """
        with self.lock(shared=False):
            for name in names:
                if before is not None:
                    before(name)
                self._delete(name)

    def _delete(self, name: str) -> None:
        doomed = self.root / f"{scratch_prefix()}delete-{name}"
        try:
            os.rename(self.root / name, doomed)
        except OSError as exc:
            raise OperationFailed(f"cannot delete snapshot {name}: {exc.strerror}") from exc
        shutil.rmtree(doomed, ignore_errors=True)

    def prune_plan(
        self,
        keep: int,
        alias: str | None = None,
        accept: Callable[[Snapshot], bool] = lambda snapshot: True,
    ) -> list[Snapshot]:
        """The snapshots ``prune --keep`` removes: all but the newest ``keep`` of those that
        ``accept`` takes (the project's own databases', say) and that hold ``alias``, if
        given. Unreadable snapshots are never chosen."""
        if keep < 0:
            raise ConfigurationError("--keep must be 0 or more")
        candidates = [
            s for s in self.snapshots() if (alias is None or alias in s.artifacts) and accept(s)
        ]
        return candidates[keep:]


def store_root(explicit: Path | None, *, settings_loaded: bool) -> Path:
    """Where snapshots live: ``--dir`` > ``SNAPCTL_DIR`` > ``SNAPSHOTS["DIRECTORY"]`` > a
    per-project directory under the user's data directory.

    The last two need the project's settings; ``settings_loaded`` says whether they are loaded.
    """
    if explicit is not None:
        return explicit.expanduser().resolve()
    from_env = os.environ.get("SNAPCTL_DIR")
    if from_env:
        return Path(from_env).expanduser().resolve()
    if not settings_loaded:
        raise ConfigurationError(
            "no snapshot directory: pass --dir, set SNAPCTL_DIR, or point snapctl at the "
            "project with --settings"
        )
    from snapctl.django_env import project_key, snapshot_settings

    configured = snapshot_settings().get("DIRECTORY")
    if configured:
        return Path(str(configured)).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("snapctl") / project_key()
