"""Prepared copies: a snapshot loaded into a side database ahead of time, so that a restore
only swaps it in. What to keep (the PREPARE policy), preparing one (in the foreground, or in
a detached process after dump and restore), finding a ready one for a restore (waiting for
one under way only while that is sooner than loading afresh), swapping it in, and dropping
copies and retired databases. Records: prepared_copies.py; the connectors' side:
``PreparesCopies`` in connectors/api.py."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

from snapctl import registry
from snapctl.connectors.api import PreparedCopy, PreparesCopies
from snapctl.errors import ConfigurationError, IntegrityError, OperationFailed, SnapctlError
from snapctl.notices import notice
from snapctl.operations.loading import (
    connector_errors,
    connector_for_restore,
    disk_errors,
    scratch_dir,
    unpacked_name,
    verify_into,
)
from snapctl.prepared_copies import CopyRecord, Records
from snapctl.progress import NoProgress, Progress
from snapctl.store import Artifact, Snapshot, SnapshotStore, checksum_problem, scratch_prefix

Policy = Literal["off", "latest", "labelled"]
POLICIES: tuple[Policy, ...] = ("off", "latest", "labelled")
DEFAULT_POLICY: Policy = "latest"
# A restore waits for a copy under way at most this share longer than a preparation is
# expected to take (a fresh load takes about as long), and this many seconds more.
_WAIT_FACTOR = 1.5
_WAIT_SLACK = 2.0
# Without an earlier preparation of the database to go by: a load's pace on this kind of
# machine (PostgreSQL's pg_restore measured 55 MB/s of archive, MariaDB 18 MB/s).
_ASSUMED_PACE = 15_000_000
_MIN_ESTIMATE = 1.0
_LOG_LIMIT = 1024 * 1024
_POLL = 0.1


def policy(no_prepare: bool = False) -> Policy:
    """What to keep prepared: ``--no-prepare``, else ``SNAPCTL_PREPARE``, else
    ``SNAPSHOTS['PREPARE']``, else the latest snapshot dumped or restored per database."""
    from snapctl.django_env import snapshot_settings

    if no_prepare:
        return "off"
    value = os.environ.get("SNAPCTL_PREPARE") or snapshot_settings().get("PREPARE")
    if value is None or value == "":
        return DEFAULT_POLICY
    if value is False:
        return "off"
    if value not in POLICIES:
        raise ConfigurationError(
            f"SNAPSHOTS['PREPARE'] (or SNAPCTL_PREPARE) is {value!r}; use 'off', 'latest' "
            "(a copy of the latest snapshot dumped or restored, per database) or 'labelled' "
            "(also one of every labelled snapshot)"
        )
    return cast(Policy, value)


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` did for one alias."""

    alias: str
    record: CopyRecord
    already: bool  # it was ready before


def _copier(loaded: registry.LoadedConnector) -> PreparesCopies:
    return cast(PreparesCopies, loaded.connector)


def preparable(snapshot: Snapshot, aliases: Sequence[str]) -> list[str]:
    """The aliases among ``aliases`` whose snapshot connector keeps prepared copies."""
    return [
        alias
        for alias in aliases
        if alias in snapshot.artifacts
        and connector_for_restore(alias, snapshot.artifacts[alias]).capabilities.prepares_copies
    ]


def _identity(alias: str) -> dict[str, str]:
    from snapctl.django_env import database_identity

    return database_identity(alias)


def _drop(record: CopyRecord, records: Records) -> None:
    """Drop a record's side database, then the record; a failure keeps the record."""
    found = registry.resolve(record.connector)
    if found is None or not found.capabilities.prepares_copies:
        records.remove(record)  # nothing here can drop it; a connector's own sweep may
        return
    with connector_errors("drop a prepared copy", record.connector, record.alias):
        _copier(found.create()).drop_copy(record.alias, record.prepared_copy)
    records.remove(record)


def _stop(record: CopyRecord, records: Records) -> None:
    """End a preparation under way (it drops what it made), or drop a ready copy or a dead
    preparation's leftovers."""
    if record.state == "preparing" and records.under_way(record):
        if record.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(record.pid, signal.SIGTERM)
        return
    _drop(record, records)


def _tidy(records: Records, identity: dict[str, str]) -> list[CopyRecord]:
    """The records of a database, once those of preparations that died are cleaned up."""
    kept = []
    for record in records.of_database(identity):
        if record.state == "preparing" and not records.under_way(record):
            with contextlib.suppress(Exception):
                _drop(record, records)
            continue
        kept.append(record)
    return kept


def settle(
    alias: str, keep: Snapshot, chosen: Policy, records: Records, *, others: bool = True
) -> None:
    """Drop what the policy no longer keeps for ``alias``'s database: retired databases
    always and, with ``others`` under ``latest`` and ``labelled``, ready copies of other
    snapshots than ``keep`` (under ``labelled``, those of labelled snapshots stay). Under
    ``off`` a copy someone prepared stays until used or deleted, and a preparation under way
    is never stopped here: it may be someone's ``snapctl prepare``. Failures are said, not
    raised: this runs in the background."""
    for record in _tidy(records, _identity(alias)):
        stays = record.kind == "prepared" and (
            not others
            or chosen == "off"
            or record.state == "preparing"
            or record.snapshot == keep.name
            or (chosen == "labelled" and record.label is not None)
        )
        if stays:
            continue
        try:
            _drop(record, records)
        except Exception as exc:  # the next run tries again
            notice(f"could not drop {record.copy.get('name') or 'a side database'}: {exc}")


def prepare(
    store: SnapshotStore,
    snapshot: Snapshot,
    aliases: Sequence[str],
    *,
    progress: Progress | None = None,
    records: Records | None = None,
    adopted: Sequence[tuple[CopyRecord, int]] = (),
) -> list[Prepared]:
    """Have a copy of ``snapshot`` ready for each alias: one ready already, one under way
    (waited for), or one made now. ``adopted``: the records ``start_in_background`` wrote
    for this process, with the descriptors of their locks, which it inherited and closes
    as each is done."""
    progress = progress or NoProgress()
    records = records or Records()
    ours = {record.alias: record for record, _ in adopted}
    locks = {record.alias: fd for record, fd in adopted}
    done = []
    for alias in aliases:
        try:
            done.append(_prepare_alias(store, snapshot, alias, progress, records, ours))
        finally:
            if alias in locks:
                with contextlib.suppress(OSError):
                    os.close(locks.pop(alias))
    return done


def _prepare_alias(
    store: SnapshotStore,
    snapshot: Snapshot,
    alias: str,
    progress: Progress,
    records: Records,
    ours: dict[str, CopyRecord],
) -> Prepared:
    artifact = snapshot.artifacts[alias]
    loaded = connector_for_restore(alias, artifact)
    if not loaded.capabilities.prepares_copies:
        raise ConfigurationError(
            f"connector '{artifact.connector}' of '{alias}' keeps no prepared copies; "
            "its restores read the snapshot directly"
        )
    mine = getattr(ours.get(alias), "token", None)  # the record this process was handed
    same = [r for r in _copies_of_artifact(records, artifact) if r.token != mine]
    ready = next((record for record in same if record.state == "ready"), None)
    if ready is None and same and alias not in ours:
        under_way = same[0]
        expected = under_way.estimate or _estimate(records, artifact)
        deadline = under_way.started + max(expected * 3, expected + 60)
        ready = _wait_for(under_way, records, progress, deadline)
        if ready is None and records.under_way(under_way):
            raise OperationFailed(
                f"the copy of '{alias}' being prepared since "
                f"{time.time() - under_way.started:.0f} s (process {under_way.pid}) is "
                f"still not ready, where {expected:.0f} s were expected; stop that "
                "process, or wait and run prepare again"
            )
    if ready is not None:
        if alias in ours:  # prepared meanwhile by another process
            records.remove(ours[alias])
        return Prepared(alias, ready, already=True)
    if alias in ours:  # its lock is ours already, inherited
        record = replace(ours[alias], pid=os.getpid())
        ready = _prepare_one(store, snapshot, artifact, loaded, records, progress, record)
    else:
        record = new_record(snapshot, artifact, records)
        with records.working_on(record):
            ready = _prepare_one(store, snapshot, artifact, loaded, records, progress, record)
    return Prepared(alias, ready, already=False)


def _copies_of_artifact(records: Records, artifact: Artifact) -> list[CopyRecord]:
    """The copies, ready or under way, of exactly ``artifact`` (same checksum and connector)
    on its alias's database, once those of dead preparations are cleaned up."""
    return [
        record
        for record in _tidy(records, _identity(artifact.alias))
        if record.kind == "prepared"
        and record.sha256 == artifact.sha256
        and record.connector == artifact.connector
    ]


def _estimate(records: Records, artifact: Artifact) -> float:
    """How long preparing ``artifact`` should take: as long as the last preparation of its
    database, else its size at an assumed pace (and a preparation's fixed costs)."""
    last = records.last_seconds(_identity(artifact.alias))
    if last is not None:
        return last
    # What a copy holds: the unpacked artifact, or the data a connector keeps on the server
    # (a postgres-template snapshot is a small descriptor of a large copy).
    size = max(artifact.unpacked_size or artifact.size, artifact.server_size)
    return _MIN_ESTIMATE + size / _ASSUMED_PACE


def new_record(snapshot: Snapshot, artifact: Artifact, records: Records) -> CopyRecord:
    """The record of a copy about to be prepared, with a fresh mark."""
    return CopyRecord(
        kind="prepared",
        state="preparing",
        alias=artifact.alias,
        database=_identity(artifact.alias),
        connector=artifact.connector,
        mark=f"sha256:{artifact.sha256} token:{secrets.token_hex(16)}",
        snapshot=snapshot.name,
        label=snapshot.label,
        sha256=artifact.sha256,
        estimate=_estimate(records, artifact),
        pid=os.getpid(),
    )


def _prepare_one(
    store: SnapshotStore,
    snapshot: Snapshot,
    artifact: Artifact,
    loaded: registry.LoadedConnector,
    records: Records,
    progress: Progress,
    record: CopyRecord,
) -> CopyRecord:
    """Prepare the copy of ``record``, whose lock this process holds. The record is written
    first: whatever kills us from here leaves a record whose lock is free, and the next
    command drops the copy by its mark."""
    alias = artifact.alias
    started = time.monotonic()
    records.write(record)
    try:
        with tempfile.TemporaryDirectory(
            prefix=scratch_prefix(), dir=scratch_dir(store)
        ) as scratch:
            private = Path(scratch) / unpacked_name(artifact)
            # The store is locked while the snapshot is read, not through the load: the
            # private copy is what gets loaded, and delete and prune may go on meanwhile.
            with store.lock(shared=True):
                _verify(store, snapshot, artifact, private, progress)
            with (
                progress.track(f"Preparing a copy of {alias}"),
                connector_errors("prepare a copy", artifact.connector, alias),
            ):
                copy = _copier(loaded).prepare_copy(alias, private, record.mark)
        seconds = round(time.monotonic() - started, 3)
        ready = record.with_copy(copy, state="ready", seconds=seconds)
        records.write(ready)
        records.remember_seconds(record.database, seconds)
        return ready
    except BaseException:
        with contextlib.suppress(Exception):
            _copier(loaded).drop_copy(alias, PreparedCopy("", record.mark))
        records.remove(record)
        raise


def _verify(
    store: SnapshotStore, snapshot: Snapshot, artifact: Artifact, private: Path, progress: Progress
) -> None:
    """The artifact, checked against its manifest, unpacked into ``private``."""
    from snapctl.store import size_problem

    with disk_errors(f"fetching snapshot {snapshot.name}", "no copy was prepared"):
        store.fetch(snapshot)
    with store.open_artifact(snapshot.path / artifact.file) as stored:
        problem = size_problem(snapshot, artifact, stored)
        if problem:
            raise IntegrityError(problem)
        digest = verify_into(private, store, artifact, stored, progress)
    problem = checksum_problem(snapshot, artifact, digest)
    if problem:
        raise IntegrityError(problem)


def _wait_for(
    record: CopyRecord, records: Records, progress: Progress, deadline: float
) -> CopyRecord | None:
    """Wait while ``record`` is under way, until it is ready, gone or past ``deadline``
    (time.time()); the ready record, or None."""
    started = time.time()
    with progress.track(f"Waiting for the copy of {record.alias} being prepared"):
        while True:
            current = next((r for r in records.all() if r.token == record.token), None)
            if current is None:
                return None
            if current.state == "ready":
                return current
            if not records.under_way(current):
                return None
            if time.time() >= deadline:
                notice(
                    f"the copy of '{record.alias}' being prepared is not ready after "
                    f"{time.time() - started:.0f} s of waiting"
                )
                return None
            time.sleep(_POLL)


def ready_copies(
    snapshot: Snapshot,
    connectors: dict[str, registry.LoadedConnector],
    aliases: Sequence[str],
    progress: Progress,
    records: Records | None = None,
) -> dict[str, CopyRecord]:
    """For a restore: each alias's ready copy of exactly its artifact (same checksum, same
    connector). A copy under way is waited for while that should be sooner than loading
    afresh, which takes about as long as preparing: until its expected end, with slack."""
    copying = [alias for alias in aliases if connectors[alias].capabilities.prepares_copies]
    if not copying:
        return {}
    try:
        records = records or Records()
    except (SnapctlError, OSError) as exc:  # the restore goes on without them
        notice(f"prepared copies are not looked for: {exc}")
        return {}
    found: dict[str, CopyRecord] = {}
    for alias in copying:
        artifact = snapshot.artifacts[alias]
        same = _copies_of_artifact(records, artifact)
        ready = next((record for record in same if record.state == "ready"), None)
        if ready is None and same:
            under_way = same[0]
            expected = under_way.estimate or _estimate(records, artifact)
            deadline = under_way.started + expected * _WAIT_FACTOR + _WAIT_SLACK
            ready = _wait_for(under_way, records, progress, deadline)
            if ready is None:
                notice(f"restoring '{alias}' from the snapshot instead")
                with contextlib.suppress(Exception):
                    _stop(under_way, records)  # it would compete with the load
        if ready is not None:
            found[alias] = ready
    return found


def swap_in(
    alias: str,
    loaded: registry.LoadedConnector,
    record: CopyRecord,
    records: Records | None = None,
) -> bool:
    """Swap the ready copy in. False when it cannot be used (gone, changed, or the live
    database changed): it is dropped and the caller restores from the snapshot; any other
    failure is raised with the database unchanged and the copy kept."""
    records = records or Records()
    copier = _copier(loaded)
    try:
        with connector_errors("restore", record.connector, alias):
            retired = copier.swap_in_copy(alias, record.prepared_copy)
    except (IntegrityError, ConfigurationError) as exc:
        notice(
            f"the prepared copy of '{alias}' cannot be used ({exc}); restoring from the snapshot"
        )
        with contextlib.suppress(Exception):
            _drop(record, records)
        records.remove(record)
        return False
    records.remove(record)
    records.write(
        CopyRecord(
            kind="retired",
            state="ready",
            alias=alias,
            database=record.database,
            connector=record.connector,
            seconds=record.seconds,
        ).with_copy(retired)
    )
    return True


def drop_copies_of(snapshot: Snapshot, records: Records | None = None) -> list[str]:
    """Drop the prepared copies of ``snapshot`` (deleted, pruned); what could not be
    dropped, as messages (the record stays, and the next delete or prune tries again)."""
    records = records or Records()
    problems = []
    for record in copies_of(snapshot, records.all()):
        try:
            _stop(record, records)
        except Exception as exc:
            problems.append(f"could not drop the prepared copy of {snapshot.name}: {exc}")
    return problems


def start_in_background(
    argv: Sequence[str],
    snapshot: Snapshot,
    aliases: Sequence[str],
    records: Records | None = None,
) -> None:
    """Run ``snapctl ARGV --records TOKENS`` detached (its own session, no terminal, output
    to the log in the state directory) to prepare copies of ``snapshot`` for ``aliases``;
    the command that starts it returns at once. Their records are written here, under locks
    the process inherits: a restore right after this one sees the copies under way, even
    before that process has started."""
    records = records or Records()
    made = [new_record(snapshot, snapshot.artifacts[alias], records) for alias in aliases]
    held = []
    log = records.root / "background.log"
    with contextlib.suppress(OSError):
        if log.lstat().st_size > _LOG_LIMIT:  # keep the last run's lines, not every run's
            os.replace(log, log.with_suffix(".log.1"))
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        for record in made:
            held.append(records.hold(record))
            records.write(replace(record, pid=None))
        # TOKEN:FD, the descriptor of its lock in the process, which closes it when done.
        pairs = ",".join(f"{record.token}:{fd}" for record, fd in zip(made, held, strict=True))
        tokens = ["--records", pairs] if made else []
        process = subprocess.Popen(
            [sys.executable, "-m", "snapctl", *argv, *tokens],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            pass_fds=held,
        )
        for record in made:  # so that a restore may ask it to stop before it begins
            records.write(replace(record, pid=process.pid))
    except OSError as exc:
        for record in made:
            records.remove(record)
        notice(f"could not start preparing a copy in the background: {exc}")
    finally:
        for fd in [*held, log_fd]:
            os.close(fd)


def copies_of(snapshot: Snapshot, records: list[CopyRecord]) -> list[CopyRecord]:
    """The prepared copies of exactly this snapshot's artifacts, for list and show."""
    sums = {artifact.sha256 for artifact in snapshot.artifacts.values()}
    return [
        record
        for record in records
        if record.kind == "prepared" and record.snapshot == snapshot.name and record.sha256 in sums
    ]
