"""The other sessions on a database that a restore must end or wait for: finding them, waiting
up to the lock timeout for those snapctl may not end, and the messages that name them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from snapctl import notices, other_sessions
from snapctl.connectors.postgres.connection import Libpq
from snapctl.connectors.postgres.quoting import do_block, literal
from snapctl.errors import OperationFailed

# How often the restore looks again while it waits for other sessions to leave: cheap (one
# statement), and often enough that nobody waits for the look.
_SESSIONS_POLL = 0.2
# At most this many sessions are described in a message; the rest are counted.
_SESSIONS_SHOWN = 5


# The other sessions of our role (and roles we belong to) on {database}, ended.
TERMINATE_LOOP = """
  FOR session IN SELECT pid FROM pg_stat_activity
                 WHERE datname = {database} AND pid <> pg_backend_pid()
                   AND pg_has_role(usesysid, 'MEMBER')
  LOOP
    BEGIN
      PERFORM pg_terminate_backend(session.pid);
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
  END LOOP;
"""
_TERMINATE = """
DECLARE session record;
BEGIN
{terminate}
END
"""


def terminate_sessions_sql(database: str) -> str:
    """End the other sessions of our role (and roles we belong to) on ``database``."""
    return do_block(_TERMINATE.format(terminate=TERMINATE_LOOP.format(database=literal(database))))


# The client sessions on {database} but this command's own ({mine}), with what the restore
# decides on and names them by. ``ours``: our role may end it (its role is one we are a member
# of; every role, for a superuser). ``locks``: it holds a lock on a relation of our role, which
# an in-place restore drops ({locks} is false when the query runs on another database, whose
# pg_class does not know them). Background processes (autovacuum, ...) have no role or are no
# client backend. State, client and times of another role's session read NULL unless we have
# pg_read_all_stats; its role, application_name and pid always show.
_SESSIONS = """
SELECT coalesce(json_agg(json_build_object(
  'pid', a.pid, 'role', a.usename, 'application', a.application_name,
  'client', coalesce(host(a.client_addr), CASE WHEN a.client_port = -1 THEN 'local' END),
  'state', a.state,
  'seconds', floor(extract(epoch FROM clock_timestamp()
                           - coalesce(a.xact_start, a.state_change, a.backend_start))),
  'ours', pg_has_role(a.usesysid, 'MEMBER'),
  'locks', {locks}) ORDER BY a.pid), '[]')
FROM pg_stat_activity a
WHERE a.datname = {database} AND a.pid <> pg_backend_pid() AND a.pid <> ALL ({mine})
  AND a.usesysid IS NOT NULL
  AND coalesce(to_jsonb(a) ->> 'backend_type', 'client backend') = 'client backend'
"""
_HOLDS_OUR_LOCKS = """EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                 WHERE l.pid = a.pid AND l.database = a.datid
                   AND pg_has_role(c.relowner, 'USAGE'))"""


@dataclass(frozen=True)
class OtherSession:
    """Another session on the database, as a message names it to the person who can end it."""

    pid: int
    role: str
    application: str
    client: str | None
    state: str | None
    seconds: float | None
    ours: bool
    locks: bool

    def describe(self, *, role: bool = True) -> str:
        """``pid 123 of role 'app' 'manage.py shell' from 10.0.0.5 idle in transaction for
        3 min``: what its owner recognises it by; what the server hides from us is left out."""
        parts = [f"pid {self.pid}"]
        if role:
            parts.append(f"of role '{self.role}'")
        if self.application:
            parts.append(f"'{self.application}'")
        if self.client:
            parts.append(
                "from the local socket" if self.client == "local" else f"from {self.client}"
            )
        if self.state:
            since = f" for {_duration(self.seconds)}" if self.seconds is not None else ""
            parts.append(f"{self.state}{since}")
        return " ".join(parts)


def _duration(seconds: float) -> str:
    """A duration as people say it: 42 s, 3 min, 5 h, 2 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _counted(count: int, noun: str) -> str:
    return f"1 {noun}" if count == 1 else f"{count} {noun}s"


def _listed(sessions: Sequence[OtherSession], *, role: bool = True) -> str:
    """The first few sessions described, the rest counted: one line however many there are."""
    shown = [session.describe(role=role) for session in sessions[:_SESSIONS_SHOWN]]
    if len(sessions) > _SESSIONS_SHOWN:
        shown.append(f"and {len(sessions) - _SESSIONS_SHOWN} more")
    return ", ".join(shown)


def _roles(sessions: Sequence[OtherSession]) -> str:
    roles = sorted({session.role for session in sessions})
    return ("role " if len(roles) == 1 else "roles ") + ", ".join(f"'{r}'" for r in roles)


def sessions_on(
    pg: Libpq, database: str, admin_db: str | None, *, locks: bool
) -> list[OtherSession]:
    """The other client sessions on ``database``, looked at from ``admin_db`` (None: from
    the database itself, which ``locks`` needs); never this command's own, which the server
    may still list for a moment after they are closed."""
    found = pg.server.value(
        sessions_sql(database, pg.server.pids, locks=locks),
        database=admin_db,
        what=f"looking at the other sessions on '{pg.alias}'",
    )
    return [OtherSession(**row) for row in found]


def sessions_sql(database: str, mine: Iterable[int], *, locks: bool) -> str:
    """The query of :func:`sessions_on`: a JSON list of the sessions, ``mine`` left out."""
    pids = ", ".join(str(pid) for pid in sorted(mine))
    return _SESSIONS.format(
        database=literal(database),
        mine=f"ARRAY[{pids}]::int[]" if pids else "'{}'::int[]",
        locks=_HOLDS_OUR_LOCKS if locks else "false",
    )


def blocking(
    sessions: Sequence[OtherSession], *, in_place: bool, terminate: bool
) -> list[OtherSession]:
    """The sessions the restore cannot go on with and may not end: another role's (on the
    swap path any of them, which makes the rename fail; in place those holding locks on our
    relations, which the drops would wait for), and ours when ending them is not allowed."""
    return [
        session
        for session in sessions
        if (session.ours and not terminate)
        or (not session.ours and (session.locks or not in_place))
    ]


def clear_the_way(
    pg: Libpq, database: str, admin_db: str | None, *, in_place: bool
) -> list[OtherSession]:
    """Make sure no session that snapctl may not end stands in the restore's way, before
    anything is changed: wait up to the lock timeout for such sessions to go, saying so,
    then fail naming them (the database unchanged). Return the sessions of our role, which
    the restore is to end (none when the policy forbids it)."""
    policy = other_sessions.policy()
    deadline = time.monotonic() + policy.lock_timeout
    waiting = False
    while True:
        sessions = sessions_on(pg, database, admin_db, locks=in_place)
        blockers = blocking(sessions, in_place=in_place, terminate=policy.terminate)
        if not blockers:
            return [session for session in sessions if session.ours] if policy.terminate else []
        if time.monotonic() >= deadline:
            raise blocked(pg, database, blockers, in_place=in_place, waited=policy.lock_timeout)
        if not waiting:
            waiting = True
            one = len(blockers) == 1
            goal = (
                f"release {'its' if one else 'their'} locks on tables in" if in_place else "leave"
            )
            notices.notice(
                f"waiting up to {_seconds(policy.lock_timeout)} for "
                f"{_counted(len(blockers), 'session')} that snapctl may not end to {goal} "
                f"'{database}' ({_listed(blockers)})"
            )
        time.sleep(_SESSIONS_POLL)


def blocked(
    pg: Libpq, database: str, blockers: Sequence[OtherSession], *, in_place: bool, waited: float
) -> OperationFailed:
    """The one line that names the sessions the restore could not get past, and what to do."""
    others = [session for session in blockers if not session.ours]
    after = f" after {_seconds(waited)}" if waited else ""
    if others:
        one = len(others) == 1
        it = "it" if one else "them"
        if in_place:
            doing = f"{'holds' if one else 'hold'} locks on tables in '{database}'{after}"
            leave = f"end {'its' if one else 'their'} transaction or disconnect"
        else:
            doing = f"{'is' if one else 'are'} connected to '{database}'{after}"
            leave = "disconnect"
        pids = ", ".join(str(session.pid) for session in others)
        return OperationFailed(
            f"cannot restore '{pg.alias}': {_counted(len(others), 'session')} that snapctl "
            f"may not end {doing} ({_listed(others)}); ask whoever runs {it} to {leave}, or "
            f"have a superuser end {it} with SELECT pg_terminate_backend(pid) FROM "
            f"pg_stat_activity WHERE pid IN ({pids}); then retry (database unchanged)"
        )
    return OperationFailed(
        f"cannot restore '{pg.alias}' without ending {_counted(len(blockers), 'other session')} "
        f"of {_roles(blockers)} on '{database}' ({_listed(blockers, role=False)}), which "
        "--no-terminate (or SNAPSHOTS['TERMINATE_SESSIONS'] = False) forbids; close "
        f"{'it' if len(blockers) == 1 else 'them'} and retry (database unchanged)"
    )


def announce_ending(database: str, sessions: Sequence[OtherSession]) -> None:
    """Say which sessions the restore is about to end, before it ends them: their users
    will see an error and must reconnect."""
    if sessions:
        notices.notice(
            f"ending {_counted(len(sessions), 'other session')} of {_roles(sessions)} on "
            f"'{database}' ({_listed(sessions, role=len({s.role for s in sessions}) > 1)}); "
            "they must reconnect"
        )
