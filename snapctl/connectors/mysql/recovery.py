"""Finishing what killed restores of a database left, before the next one starts: a swap that
began is completed in the direction its marker says, and the scratch databases dropped."""

from __future__ import annotations

import re
from pathlib import Path

from snapctl import other_sessions
from snapctl.connectors import _process
from snapctl.connectors.mysql.blocking_sessions import LOCK_WAIT_TIMEOUT, OtherSessions
from snapctl.connectors.mysql.objects import Objects, drop_programs, list_objects
from snapctl.connectors.mysql.quoting import quote_name
from snapctl.connectors.mysql.session import Client
from snapctl.connectors.mysql.swap import SCRATCH_INFIX, Swap, scratch_schemas
from snapctl.errors import OperationFailed


def recover(
    client: Client, live: str, lock_timeout: float = other_sessions.DEFAULT_LOCK_TIMEOUT
) -> None:
    """Finish what killed restores of ``live`` left, before another one starts (the caller
    holds the database's lock, so none of them is running).

    For each token, ``<live>_snapctl_<8 hex>`` (the snapshot's tables) and ``...o`` (the
    previous ones): if the first holds the swap's marker with its scripts, the swap is
    finished in the direction the marker says (``done``: the snapshot's objects are recreated;
    ``pending``: the previous objects), then both are dropped. Without a marker, nothing in
    ``live`` was touched yet: both are dropped, the second only if it holds no table. Both are
    left alone when marked as kept after a failed undo. No other database is touched.
    Finishing a swap drops and creates objects on the live tables: it first waits, up to
    ``lock_timeout`` seconds, for the sessions holding them, as a swap does.
    """
    pattern = re.compile(re.escape(live + SCRATCH_INFIX) + r"([0-9a-f]{8})(o?)")
    tokens: dict[str, set[str]] = {}
    for name in scratch_schemas(client, live):
        match = pattern.fullmatch(name)
        if match:
            tokens.setdefault(match.group(1), set()).add(name)
    if not tokens:
        return
    found = list_objects(client, [live, *sorted(set().union(*tokens.values()))])
    for token, names in sorted(tokens.items()):
        swap = Swap(client, live, Path(), token=token)
        scratch, aside = found.get(swap.scratch, Objects()), found.get(swap.aside, Objects())
        if swap.kept in aside.tables or swap.kept in scratch.tables:
            continue
        statements: list[bytes] = []
        marker = next((t for t in (swap.done, swap.pending) if t in scratch.tables), None)
        script = _marker_script(client, swap.scratch, marker, marker == swap.done)
        step = f"finishing restore {token} of '{live}' that was killed"
        outcome = "the next restore finishes it"
        others = OtherSessions(client, live, lock_timeout)
        if script is not None:  # the swap began: finish it, whichever way the marker says
            others.wait(step, outcome)
            statements += [line.encode() for line in drop_programs(live, found[live])]
            statements.append(script)
            found[live] = Objects(tables=found[live].tables)
        elif aside.tables or aside.views:
            continue  # not ours to judge: leave both
        statements += [
            f"DROP DATABASE IF EXISTS {quote_name(name)};".encode()
            for name in sorted(names, reverse=True)  # the previous tables' first
        ]
        with _process.private_file("", suffix=".sql") as path:
            path.write_bytes(b"\n".join(statements) + b"\n")  # still private: chmod-ed
            try:
                client.load(
                    path,
                    live,
                    f"{step}, and dropping its scratch databases {' and '.join(sorted(names))}",
                )
            except OperationFailed as exc:
                if LOCK_WAIT_TIMEOUT.search(str(exc)):
                    raise others.timed_out(step, outcome) from exc
                raise


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
