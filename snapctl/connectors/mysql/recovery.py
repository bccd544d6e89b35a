"""Finishing what killed restores of a database left, before the next one starts: a swap that
began is completed in the direction its marker says, and the scratch databases dropped; and
the retired databases that prepared copies' swaps left behind."""

from __future__ import annotations

from pathlib import Path

from snapctl import other_sessions
from snapctl.connectors import _process
from snapctl.connectors.mysql.blocking_sessions import LOCK_WAIT_TIMEOUT, OtherSessions
from snapctl.connectors.mysql.names import copy_of_marker, retired_marker, side_kind
from snapctl.connectors.mysql.objects import Objects, drop_programs, list_objects
from snapctl.connectors.mysql.quoting import quote_name
from snapctl.connectors.mysql.session import Client
from snapctl.connectors.mysql.swap import Swap, scratch_schemas
from snapctl.errors import OperationFailed


def recover(
    client: Client,
    live: str,
    lock_timeout: float = other_sessions.DEFAULT_LOCK_TIMEOUT,
    drop_retired: bool = True,
) -> None:
    """Finish what killed restores of ``live`` left, before another one starts (the caller
    holds the database's lock, so none of them is running).

    For each token, ``<live>_snapctl_<8 hex>`` (the snapshot's tables, or a prepared copy's
    swap's marker) and ``...o`` (the previous ones): if the first holds the swap's marker with
    its scripts, the swap is finished in the direction the marker says (``done``: the
    snapshot's objects are recreated, and an emptied prepared copy dropped; ``pending``: the
    previous objects), then both are dropped. Without a marker, nothing in ``live`` was
    touched yet: both are dropped, the second only if it holds no table or is marked retired.
    Both are left alone when marked as kept after a failed undo. With ``drop_retired`` False
    (a prepared copy's swap, which must take moments), a retired database holding the
    previous tables is left for ``drop_copy()`` or the next plain restore. Prepared copies
    (``...p``) are left alone, but for one a finished swap emptied. No other database is
    touched. Finishing a swap drops and creates objects on the live tables: it first waits, up
    to ``lock_timeout`` seconds, for the sessions holding them, as a swap does.
    """
    tokens: dict[str, set[str]] = {}
    for name in scratch_schemas(client, live):
        side = side_kind(live, name)
        if side is not None and side[1] != "p":
            tokens.setdefault(side[0], set()).add(name)
    if not tokens:
        return
    found = list_objects(client, [live, *sorted(set().union(*tokens.values()))])
    for token, names in sorted(tokens.items()):
        swap = Swap(client, live, Path(), token=token)
        scratch, aside = found.get(swap.scratch, Objects()), found.get(swap.aside, Objects())
        if swap.kept in aside.tables or swap.kept in scratch.tables:
            continue
        retired = swap.retired in aside.tables
        statements: list[bytes] = []
        marker = next((t for t in (swap.done, swap.pending) if t in scratch.tables), None)
        script = _marker_script(client, swap.scratch, marker, marker == swap.done)
        step = f"finishing restore {token} of '{live}' that was killed"
        outcome = "the next restore finishes it"
        others = OtherSessions(client, live, lock_timeout)
        drop = sorted(names, reverse=True)  # the previous tables' first
        if script is not None:  # the swap began: finish it, whichever way the marker says
            others.wait(step, outcome)
            statements += [line.encode() for line in drop_programs(live, found[live])]
            statements.append(script)
            found[live] = Objects(tables=found[live].tables)
            if marker == swap.done:  # a prepared copy's tables are live: drop its empty
                # database before the marker's, as the swap's script does
                emptied = [copy_of_marker(live, table) for table in scratch.tables]
                drop[-1:-1] = [name for name in emptied if name is not None]
        elif aside.tables and not retired:
            continue  # not ours to judge: leave both
        if retired and not drop_retired and (len(aside.tables) > 1 or aside.views):
            drop.remove(swap.aside)  # the previous tables: dropping them takes long
        if not (drop or statements):
            continue
        statements += [f"DROP DATABASE IF EXISTS {quote_name(name)};".encode() for name in drop]
        with _process.private_file("", suffix=".sql") as path:
            path.write_bytes(b"\n".join(statements) + b"\n")  # still private: chmod-ed
            try:
                client.load(
                    path,
                    live,
                    f"{step}, and dropping its scratch databases {' and '.join(drop)}",
                )
            except OperationFailed as exc:
                if LOCK_WAIT_TIMEOUT.search(str(exc)):
                    raise others.timed_out(step, outcome) from exc
                raise


def retired_databases(client: Client, live: str) -> list[str]:
    """The retired databases of ``live`` whose swap is over (its scratch database is gone):
    nothing uses them, so they may be dropped at any time, without the database's lock."""
    schemas = scratch_schemas(client, live)
    candidates = []
    for name in sorted(schemas):
        side = side_kind(live, name)
        if side is not None and side[1] == "o" and name[:-1] not in schemas:
            candidates.append(name)
    if not candidates:
        return []
    found = list_objects(client, candidates)
    return [
        name
        for name in candidates
        if retired_marker(name[-9:-1]) in found[name].tables
        and Swap(client, live, Path(), token=name[-9:-1]).kept not in found[name].tables
    ]


def _marker_script(client: Client, scratch: str, marker: str | None, done: bool) -> bytes | None:
    """The script the marker holds for the direction it says, b"" for none; None if the
    marker (or its row) is missing: the swap never began."""
    if marker is None:
        return None
    column = "new" if done else "old"
    rows = client.query(
        f"SELECT {column} FROM {quote_name(scratch)}.{quote_name(marker)} WHERE x = 1",
        f"reading the marker of '{scratch}'",
    )
    if not rows:
        return None
    script = rows[0][0]
    return b"" if script is None else bytes(script)
