"""The connector contract: what a connector must define, what it may, and what snapctl reads.

Plugin authors read this module (README's "Writing a connector" is generated from it:
``python -m snapctl.connectors.contract_docs``). snapctl itself reads a connector only
through :func:`capabilities_of`, once; docs/connector-contract.md tells why.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeGuard, runtime_checkable

from snapctl.errors import ConfigurationError

if TYPE_CHECKING:
    from snapctl.unpacking import Unpacking


@runtime_checkable
class DatabaseConnector(Protocol):
    """Interface for dumping and restoring a single database alias.

    Required: any class with these two methods is a connector; the rest is optional. Raise
    ``snapctl.errors.OperationFailed`` or ``ConfigurationError`` with a one-line message for
    failures you expect; anything else is reported as a failure of your connector.
    """

    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        """Dump the database to dest and return artifact metadata (JSON-serialisable
        values)."""
        ...

    def restore(self, db_alias: str, src: Path) -> None:
        """Restore the database from the dump file at src, replacing its contents."""
        ...


class ConnectorAttributes(Protocol):
    """Optional class attributes, read once, with these defaults when absent. A value of the
    wrong type (``binaries = "pg_dump"`` instead of ``("pg_dump",)``) is a configuration
    error naming the connector."""

    name: str | None = None
    """The registry name: what ``--connector`` and manifests call it (default: the class
    name)."""
    engines: tuple[str, ...] = ()
    """Substrings of ``DATABASES[...]["ENGINE"]`` it serves when nothing else is configured."""
    binaries: tuple[str, ...] = ()
    """Programs it needs on PATH (``"a|b"``: either); checked before any work."""
    extension: str = "dump"
    """The artifact's file suffix, before the compression's."""
    portable: bool = False
    """Its snapshots may be restored into a database of another engine."""
    needs_app_registry: bool = True
    """``django.setup()`` runs before it (code written for the reference API expects it). Say
    False when it reads no models, only ``django.conf.settings`` and ``DATABASES``: snapctl
    then loads only the settings, which saves seconds on a project with many apps. A connector
    module that uses models when it is imported still works: snapctl sets Django up and
    imports it again."""
    dump_to_pipe: bool = False
    """``dump()`` may write into a pipe (see ``StreamsIntoPipe``)."""


class StreamsIntoPipe(Protocol):
    """Optional: ``dump_to_pipe = True``. ``dest`` may then be a named pipe that snapctl
    compresses and hashes as it arrives: write it once, front to back, without seeking,
    reading it back or reopening it (a tool writing to it as its output file is fine), and let
    nothing hold it open after ``dump()`` returns. Without it, or where no pipe can be made,
    ``dest`` is a regular file that snapctl compresses after ``dump()`` returns."""

    dump_to_pipe: Literal[True]


class RestoresWhileUnpacking(Protocol):
    """Optional, for a connector whose ``restore()`` reads its file front to back: snapctl
    verifies the checksum, then calls this instead of ``restore()`` while a thread unpacks the
    artifact (compressed or not) into ``unpacking.path``, hashing it again as it reads. Not
    called for a connector that also has ``check()``, which needs the whole file first. The
    SQLite connector uses it to copy pages while they are unpacked."""

    def restore_while_unpacking(self, db_alias: str, unpacking: Unpacking) -> None:
        """Restore from ``unpacking.path`` (``snapctl.unpacking.Unpacking``) as it fills.
        Call ``unpacking.wait_for(n)`` before reading the first ``n`` bytes (False if the file
        is shorter) and ``unpacking.wait_done()`` (its size) before making the restore final;
        both raise the unpacking's error, after which the database must be left as it was.
        ``unpacking.reserve(n)`` makes the file ``n`` bytes long at once, and
        ``unpacking.discard(a, b)`` drops bytes the restore will not read again."""
        ...


class KeepsDataOutside(Protocol):
    """Optional, for a connector that keeps its data outside the artifact (a copy on the
    database server, say); each method may be defined alone. ``src`` is the artifact as
    ``dump()`` wrote it. The metadata's ``server_size``, in bytes, is what ``list`` and
    ``show`` give as kept on the server."""

    def check(self, db_alias: str, src: Path) -> None:
        """Raise ``snapctl.errors.IntegrityError`` when that data is gone or damaged; called by
        ``verify`` and before any restore touches the database."""
        ...

    def forget(self, db_alias: str, src: Path) -> None:
        """Release that data when the snapshot is deleted or pruned (if it fails, the snapshot
        stays), or when the dump that made it fails."""
        ...


class TakesExclusions(Protocol):
    """Optional: an ``exclude`` attribute (apps or models to leave out). ``--exclude`` adds
    to it before ``dump()`` or ``restore()``; for any other connector ``--exclude`` is a usage
    error. The dumpdata connector takes exclusions."""

    exclude: tuple[str, ...]


class LeavesOutData(Protocol):
    """Optional: an ``exclude_data`` attribute, the tables (names as in the database) whose
    rows ``dump()`` leaves out while keeping the tables themselves, with their indexes,
    constraints and sequences: a restore gives them back empty. snapctl sets it before
    ``dump()`` from ``--exclude-data`` and ``SNAPSHOTS["EXCLUDE_DATA"]``, after checking that
    each table exists and that no table whose rows are kept references one of them; for any
    other connector those are a usage error. Every built-in connector leaves out data."""

    exclude_data: tuple[str, ...]


class Sanitizer(Protocol):
    """What snapctl passes to ``dump_sanitized()``: the project's rules and key, bound to
    the alias. A connector uses the method that fits how it dumps."""

    def sanitize_database(self, overrides: Mapping[str, Any]) -> None:
        """Apply the rules, in one transaction, to the database that the alias's
        ``DATABASES`` entry updated with ``overrides`` (``{"NAME": scratch}``, say) points at,
        through a Django connection of its own, closed when it returns."""
        ...

    def sanitize_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """One serialized object (``{"model": "app.model", "pk": ..., "fields": {...}}``, as
        Django's serializers make them), its sanitized fields replaced, for a connector that
        writes objects: call it on each as it is written, in the order they are written."""
        ...


class DumpsSanitized(Protocol):
    """Optional, for ``dump --sanitize``: dump the database with the project's
    ``SNAPSHOTS["SANITIZE"]`` rules applied, so the artifact never holds the real values,
    never touching the live database. Without it, ``--sanitize`` is a usage error naming the
    connector."""

    def dump_sanitized(self, db_alias: str, dest: Path, sanitizer: Sanitizer) -> dict[str, Any]:
        """As ``dump()``, from a private scratch copy of the database: make it (the SQLite
        backup API, a scratch database on the server), call ``sanitizer.sanitize_database()``
        pointing at it (or pass each object through ``sanitizer.sanitize_object()`` as it is
        written), leave no old value in it (VACUUM), dump it, and drop it, also on
        failure or interrupt. Name the copy so that a killed dump's copy can be found and
        dropped later."""
        ...


@dataclass(frozen=True)
class PreparedCopy:
    """A side database on the alias's server that a connector made, as snapctl records it
    between commands: a copy ``prepare_copy()`` filled with a snapshot, or the database a
    swap retired. ``name`` is the database's; ``mark`` is what ``prepare_copy()`` was asked
    to record on the copy (empty for a retired database); ``size`` its bytes on the server
    when known; ``metadata`` whatever else the connector needs to find and trust it again
    (JSON-serialisable)."""

    name: str
    mark: str = ""
    size: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class PreparesCopies(Protocol):
    """Optional, for instant restores: load a snapshot into a side database ahead of time
    (in the background), then swap it in place of the live one in moments. A connector
    defines all three methods or none; docs/connector-contract.md tells how snapctl uses
    them."""

    def prepare_copy(self, db_alias: str, src: Path, mark: str) -> PreparedCopy:
        """Load the artifact at src into a new side database on the alias's server, leaving
        the live database untouched, record ``mark`` on it (snapctl passes the artifact's
        checksum and a private token), and return it. Nobody but this connector may change it
        until it is swapped in or dropped, and the connector's clean-up of interrupted
        restores must leave it alone. Raise ``ConfigurationError`` (one line, saying how much
        room is needed) rather than leave the server's disk nearly full. On any failure or
        interrupt, drop what it made."""
        ...

    def swap_in_copy(self, db_alias: str, copy: PreparedCopy) -> PreparedCopy:
        """Put the prepared copy in the place of the alias's database, all or nothing, and
        return the previous database, kept under a side name for snapctl to drop later with
        ``drop_copy()`` (so that the swap takes moments at any size). Raise
        ``IntegrityError`` if the copy is not the one prepared (gone, or without ``mark``)
        and ``ConfigurationError`` if the live database has changed so that the swap would
        lose something (owner, grants, settings); the live database is then untouched, and a
        plain restore still works."""
        ...

    def drop_copy(self, db_alias: str, copy: PreparedCopy) -> None:
        """Drop a prepared copy that will not be swapped in, or a retired database; one
        already gone, or no longer this connector's, is left alone without error. With an
        empty ``copy.name``, drop the copy ``prepare_copy(mark=copy.mark)`` made or was
        making: snapctl records the mark before it starts, so a preparation killed before it
        returned is cleaned up this way (name copies after their mark)."""
        ...


# The contract, in the order README lists it (contract_docs.py).
CONTRACT: tuple[type, ...] = (
    DatabaseConnector,
    ConnectorAttributes,
    StreamsIntoPipe,
    RestoresWhileUnpacking,
    KeepsDataOutside,
    TakesExclusions,
    LeavesOutData,
    DumpsSanitized,
    Sanitizer,
    PreparesCopies,
    PreparedCopy,
)

Hook = Literal["check", "forget"]
_COPY_METHODS = ("prepare_copy", "swap_in_copy", "drop_copy")
_COLLECTIONS = (tuple, list, set, frozenset)


@dataclass(frozen=True)
class Capabilities:
    """What a connector (class or instance) says about itself, read and checked once."""

    name: str
    engines: tuple[str, ...]
    binaries: tuple[str, ...]
    extension: str
    portable: bool
    needs_app_registry: bool
    dump_to_pipe: bool
    restores_while_unpacking: bool
    checks: bool  # check(db_alias, src)
    forgets: bool  # forget(db_alias, src)
    takes_exclusions: bool
    prepares_copies: bool
    leaves_out_data: bool = False  # exclude_data: a tuple of table names
    dumps_sanitized: bool = False  # dump_sanitized(db_alias, dest, sanitizer)

    def has_hook(self, hook: Hook) -> bool:
        return self.checks if hook == "check" else self.forgets

    @property
    def follows_unpacking(self) -> bool:
        """Whether snapctl restores with ``restore_while_unpacking()``: not with ``check()``,
        which needs the unpacked file before the restore is confirmed."""
        return self.restores_while_unpacking and not self.checks


def is_connector(obj: object) -> TypeGuard[DatabaseConnector]:
    """Whether ``obj`` has callable ``dump()`` and ``restore()`` methods."""
    return callable(getattr(obj, "dump", None)) and callable(getattr(obj, "restore", None))


_ABSENT = object()


class _Reader:
    """Reads a connector's attributes, collecting every wrong type for one message."""

    def __init__(self, connector: object) -> None:
        self.connector = connector
        self.cls = connector if isinstance(connector, type) else type(connector)
        self.problems: list[str] = []

    def _get(self, attr: str, of: object = None) -> Any:
        """The attribute, or None when absent or when only an instance can tell (a property
        read from the class: the SQLite connector's ``extension`` depends on its format)."""
        of = self.connector if of is None else of
        value = getattr(of, attr, None)
        if isinstance(of, type) and isinstance(value, property | functools.cached_property):
            return None
        return value

    def name(self) -> str:
        # From the class, as the reference API read it: an instance attribute ``name`` is the
        # connector's own business (a database name, say).
        value = self._get("name", self.cls)
        if value is None or value == "":
            return self.cls.__name__
        if isinstance(value, str):
            return value
        self.problems.append(f"name must be a string, not {value!r}")
        return self.cls.__name__

    def strings(self, attr: str) -> tuple[str, ...]:
        value = self._get(attr)
        if value is None:
            return ()
        if isinstance(value, _COLLECTIONS) and all(isinstance(item, str) for item in value):
            return tuple(value)
        self.problems.append(f"{attr} must be a tuple of strings, not {value!r}")
        return ()

    def flag(self, attr: str, default: bool) -> bool:
        value = self._get(attr)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.problems.append(f"{attr} must be True or False, not {value!r}")
        return default

    def text(self, attr: str, default: str) -> str:
        value = self._get(attr)
        if value is None:
            return default
        if isinstance(value, str) and value:
            return value
        self.problems.append(f"{attr} must be a non-empty string, not {value!r}")
        return default

    def method(self, attr: str) -> bool:
        value = self._get(attr)
        if value is None:
            return False
        if callable(value):
            return True
        self.problems.append(f"{attr} must be a method, not {value!r}")
        return False

    def exclusions(self) -> bool:
        if getattr(self.connector, "exclude", _ABSENT) is _ABSENT:
            return False
        self.strings("exclude")  # None counts as no exclusions yet
        return True

    def data_exclusions(self) -> bool:
        if getattr(self.connector, "exclude_data", _ABSENT) is _ABSENT:
            return False
        self.strings("exclude_data")  # None counts as none yet
        return True

    def copies(self) -> bool:
        found = [method for method in _COPY_METHODS if self.method(method)]
        if found and len(found) < len(_COPY_METHODS):
            lacking = ", ".join(f"{m}()" for m in _COPY_METHODS if m not in found)
            self.problems.append(f"it prepares copies but lacks {lacking}")
        return len(found) == len(_COPY_METHODS)

    def refuse_problems(self, name: str) -> None:
        if self.problems:
            raise ConfigurationError(
                f"connector '{name}' ({class_path(self.cls)}): {'; '.join(self.problems)}"
            )


def class_path(connector: object) -> str:
    """``module:Class`` of a connector class or instance, as manifests and listings show it."""
    cls = connector if isinstance(connector, type) else type(connector)
    return f"{cls.__module__}:{cls.__qualname__}"


def capabilities_of(connector: object) -> Capabilities:
    """The capabilities of a connector class or instance, its attributes checked: one
    ``ConfigurationError`` naming the connector lists every attribute of the wrong type."""
    read = _Reader(connector)
    defaults = ConnectorAttributes
    capabilities = Capabilities(
        name=read.name(),
        engines=read.strings("engines"),
        binaries=read.strings("binaries"),
        extension=read.text("extension", defaults.extension),
        portable=read.flag("portable", defaults.portable),
        needs_app_registry=read.flag("needs_app_registry", defaults.needs_app_registry),
        dump_to_pipe=read.flag("dump_to_pipe", defaults.dump_to_pipe),
        restores_while_unpacking=read.method("restore_while_unpacking"),
        checks=read.method("check"),
        forgets=read.method("forget"),
        takes_exclusions=read.exclusions(),
        prepares_copies=read.copies(),
        leaves_out_data=read.data_exclusions(),
        dumps_sanitized=read.method("dump_sanitized"),
    )
    read.refuse_problems(capabilities.name)
    return capabilities
