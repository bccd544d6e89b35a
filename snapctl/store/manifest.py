"""The manifest: what a snapshot holds (:class:`Snapshot`, an :class:`Artifact` per database
alias), read strictly as input from outside and written once. Its format and every check made
on it are in docs/store.md."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from snapctl import compression
from snapctl.encryption import keys
from snapctl.errors import ConfigurationError, IntegrityError
from snapctl.sanitizing.rules import parse_rule
from snapctl.store import manifest_fields as fields
from snapctl.store.files import fsync_dir, read_regular_file
from snapctl.store.names import snapshot_name

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A manifest lists a few databases: far below this, which bounds what a planted one costs.
MAX_MANIFEST = 1024 * 1024


@dataclass(frozen=True)
class Encryption:
    """How an artifact is encrypted: with age, to ``recipients`` (public keys), its
    plaintext (the compressed artifact) hashing to ``plaintext_sha256``."""

    recipients: tuple[str, ...]
    plaintext_sha256: str
    method: str = "age"

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "recipients": list(self.recipients),
            "plaintext_sha256": self.plaintext_sha256,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Encryption:
        fields.one_of(data, "method", ("age",), where)
        recipients = data.get("recipients")
        if (
            not isinstance(recipients, list)
            or not recipients
            or not all(isinstance(r, str) and keys.is_recipient(r) for r in recipients)
        ):
            raise fields.MalformedManifest(f"{where}recipients is not a list of public keys")
        return cls(tuple(recipients), fields.sha256(data, "plaintext_sha256", where))


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
    # Tables whose rows the dump left out (sorted): a restore gives them back empty.
    excluded_data: tuple[str, ...] = ()
    # None: stored as compressed, unencrypted.
    encryption: Encryption | None = None
    # The sanitizing rules the dump applied ({"rules": {target: spec}}, never the key), or
    # None for a dump of the real data.
    sanitized: dict[str, Any] | None = None

    @property
    def suffix(self) -> str:
        """How the file's name ends past its format: compression, then encryption."""
        encrypted = compression.ENCRYPTED_SUFFIX if self.encryption else ""
        return compression.SUFFIXES[self.compression] + encrypted

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
            "encryption": self.encryption.to_json() if self.encryption else None,
            "excluded_data": list(self.excluded_data),
            "sanitized": self.sanitized,
        }

    @classmethod
    def from_json(cls, alias: str, data: dict[str, Any]) -> Artifact:
        """Read strictly: a field of the wrong type is a :class:`MalformedManifest`."""
        where = f"databases.{alias}."
        method = fields.one_of(data, "compression", tuple(compression.SUFFIXES), where)
        encryption = (
            Encryption.from_json(fields.mapping(data, "encryption", where), f"{where}encryption.")
            if data.get("encryption") is not None
            else None
        )
        ending = compression.SUFFIXES[method] + (compression.ENCRYPTED_SUFFIX if encryption else "")
        file = fields.text(data, "file", where)
        if Path(file).name != file or file.startswith(".") or not file.endswith(ending):
            raise fields.MalformedManifest(
                f"{where}file {file!r} is not a plain file name ending as its compression "
                "and encryption do"
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
            encryption=encryption,
            excluded_data=_excluded_data(data, where),
            sanitized=_sanitized(data, where),
        )


def _sanitized(data: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The ``sanitized`` record: ``{"rules": {target: spec}}``, each rule as settings would
    write it (sanitizing/rules.py's grammar). Only shown, never acted on: a callable's path is
    never imported."""
    if data.get("sanitized") is None:
        return None
    record = fields.mapping(data, "sanitized", where)
    if sorted(record) != ["rules"]:
        raise fields.MalformedManifest(f"{where}sanitized must hold 'rules' only")
    rules = fields.mapping(record, "rules", f"{where}sanitized.")
    for target, spec in rules.items():
        try:
            parse_rule(target, spec)
        except ConfigurationError:
            raise fields.MalformedManifest(
                f"{where}sanitized.rules has a rule that is not one: {str(target)[:80]!r}"
            ) from None
        texts = [spec] if isinstance(spec, str) else list(spec.values())
        for text in [target, *texts]:
            if isinstance(text, str) and fields.CONTROL_CHARACTERS.search(text):
                raise fields.MalformedManifest(f"{where}sanitized.rules holds control characters")
    return {"rules": dict(rules)}


IDENTITY_KEYS = ("vendor", "name", "host", "port")
# Longer than any engine's table names (PostgreSQL 63 bytes, MySQL 64 characters).
_MAX_TABLE_NAME = 255


def _excluded_data(data: dict[str, Any], where: str) -> tuple[str, ...]:
    """The tables an artifact holds empty: a list of distinct names, printable, on one line
    (``show`` and ``restore`` print them); absent in older snapshots, meaning none."""
    if "excluded_data" not in data:
        return ()
    value = data["excluded_data"]
    if not isinstance(value, list):
        raise fields.MalformedManifest(f"{where}excluded_data is not a list")
    for table in value:
        if (
            not isinstance(table, str)
            or not 0 < len(table) <= _MAX_TABLE_NAME
            or fields.CONTROL_CHARACTERS.search(table)
        ):
            raise fields.MalformedManifest(
                f"{where}excluded_data holds {table!r}, not a table name"
            )
    if len(set(value)) != len(value):
        raise fields.MalformedManifest(f"{where}excluded_data names a table twice")
    return tuple(value)


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


def read_manifest(path: Path) -> Snapshot:
    """The snapshot in the directory ``path``, as its manifest describes it; anything wrong
    with the manifest is an :class:`IntegrityError` naming the snapshot."""
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


def write_manifest(
    directory: Path,
    *,
    name: str,
    label: str | None,
    created: datetime,
    snapctl_version: str,
    django_version: str,
    artifacts: dict[str, Artifact],
) -> None:
    """Write the manifest of the snapshot being assembled in ``directory``, private and
    flushed to disk with the directory's entry for it."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "label": label,
        "created": created.isoformat(),
        "snapctl_version": snapctl_version,
        "django_version": django_version,
        "databases": {alias: a.to_json() for alias, a in artifacts.items()},
    }
    manifest_path = directory / MANIFEST
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    manifest_path.chmod(0o600)
    fsync_dir(directory)
