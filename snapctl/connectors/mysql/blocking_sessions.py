"""Other sessions holding the live tables, which would make the swap's RENAME wait and the
application's queries queue behind it: finding them, waiting up to the lock timeout, and the
failure that names them."""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from snapctl import notices
from snapctl.connectors.mysql.quoting import as_text, quote_text
from snapctl.connectors.mysql.session import Client, ServerError, lock_wait_seconds
from snapctl.errors import OperationFailed

_POLL = 0.25  # seconds between two looks at the other sessions while waiting for them
# Seconds a busy application's short transactions get to end before the wait is announced:
# a restore of a busy database does not report every request it waited a moment for.
_QUIET_WAIT = 0.5
_NO_PROCESS_PRIVILEGE = 1227  # INNODB_TRX is only for accounts with PROCESS
LOCK_WAIT_TIMEOUT = re.compile(r"\bERROR 1205\b")  # lock_wait_timeout ran out


class LockTimeout(OperationFailed):
    """Other sessions held the live tables longer than the lock timeout."""


@dataclass(frozen=True)
class Blocker:
    """Another session holding (or taken to hold) tables of the live database: the swap's
    RENAME would wait for it, and the application's queries would queue behind the RENAME."""

    id: int
    account: str  # user@host, as the server shows it
    command: str  # "Sleep", or what it runs: "Query: Sending data"
    seconds: int  # in that command: for Sleep, since its last statement
    started: str | None  # when its transaction began; None: a lock without one (LOCK TABLES)
    open_for: int | None  # seconds its transaction has been open

    @property
    def key(self) -> tuple[int, str | None]:
        """The session and its transaction: a later transaction of the same session (a busy
        worker's next request) is not the one that was waited for."""
        return self.id, self.started

    def __str__(self) -> str:
        if self.command == "Sleep":
            doing = (
                f"Sleep, idle in transaction for {self.seconds} s"
                if self.started is not None
                else f"Sleep for {self.seconds} s, holding a lock"
            )
        else:
            doing = f"{self.command} for {self.seconds} s"
            if self.open_for is not None:
                doing += f", transaction open for {self.open_for} s"
        return f"session {self.id} ({self.account}, {doing})"


def _sessions(blockers: Sequence[Blocker]) -> str:
    return ", ".join(str(blocker) for blocker in blockers)


@dataclass
class OtherSessions:
    """The sessions that hold tables of ``live``, and the restore's wait for them: up to the
    policy's lock timeout, then a failure that names them and says what to do."""

    client: Client
    live: str
    timeout: float  # seconds, from other_sessions.policy()

    @functools.cached_property
    def lock_info(self) -> bool:
        """Whether MariaDB's METADATA_LOCK_INFO plugin is there to say exactly who holds
        which table (it is seldom installed: the open transactions stand in for it)."""
        rows = self.client.query(
            "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = "
            "'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'",
            "looking for the METADATA_LOCK_INFO plugin",
        )
        return bool(rows and int(rows[0][0]))

    def holding(self, open_at_least: int | None = None) -> list[Blocker] | None:
        """The other sessions holding tables of ``live``; None if this account may not know
        (INNODB_TRX needs PROCESS). Without the plugin, those in a transaction whose default
        database is ``live`` (Django's connections, a ``manage.py shell``): a transaction
        holds every table it touched until it ends. With ``open_at_least``, also any session
        whose transaction has been open that many seconds, from wherever."""
        live = quote_text(self.live)
        if self.lock_info:
            held = (
                "p.ID IN (SELECT THREAD_ID FROM information_schema.METADATA_LOCK_INFO "
                f"WHERE TABLE_SCHEMA = {live})"
            )
        else:
            held = f"(t.trx_mysql_thread_id IS NOT NULL AND p.DB = {live})"
        if open_at_least is not None:
            held += f" OR TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) >= {int(open_at_least)}"
        sql = (
            "SELECT p.ID, p.USER, p.HOST, p.COMMAND, p.STATE, p.TIME, t.trx_started, "
            "TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) FROM information_schema.PROCESSLIST p "
            "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
            f"WHERE p.ID <> CONNECTION_ID() AND ({held}) ORDER BY p.ID"
        )
        try:
            rows = self.client.query(sql, f"looking for sessions holding tables of '{self.live}'")
        except ServerError as exc:
            if exc.code == _NO_PROCESS_PRIVILEGE:
                return None
            raise
        return [_blocker(row) for row in rows]

    def wait(self, step: str, outcome: str) -> None:
        """Wait up to the lock timeout for the sessions holding the live tables now to let
        them go, saying whom for if it takes more than a moment; fail naming those still there.

        Only the transactions found at first are waited for: a busy application always has
        some running, each short, and the RENAME waits for those that begin later, within the
        same bound. If this account cannot see the sessions, the RENAME's bound is all there is.
        """
        start = time.monotonic()
        first = self.holding()
        if not first:
            return
        waited_for = {blocker.key for blocker in first}
        still, announced = first, False
        while still:
            elapsed = time.monotonic() - start
            if elapsed >= self.timeout:
                raise self._failure(step, f"{self.timeout:g}", still, outcome)
            if not announced and elapsed >= _QUIET_WAIT:
                notices.notice(
                    f"waiting up to {self.timeout:g} s for other sessions holding the tables of "
                    f"'{self.live}' to commit or end: {_sessions(still)}"
                )
                announced = True
            time.sleep(min(_POLL, self.timeout - elapsed))
            still = [b for b in self.holding() or [] if b.key in waited_for]

    def timed_out(self, step: str, outcome: str | None = None) -> LockTimeout:
        """The failure for a statement that waited the whole ``lock_wait_timeout`` (ERROR
        1205), naming the sessions holding the live tables, or else those whose transaction is
        as old as that wait (the look before the swap missed them)."""
        seconds = lock_wait_seconds(self.timeout)
        found: list[Blocker] = []
        with contextlib.suppress(OperationFailed):  # the message matters more than its names
            found = self.holding(open_at_least=seconds) or []
        return self._failure(step, str(seconds), found, outcome)

    def _failure(
        self, step: str, seconds: str, blockers: Sequence[Blocker], outcome: str | None
    ) -> LockTimeout:
        if blockers:
            kill = ", ".join(f"KILL {blocker.id}" for blocker in blockers)
            who = f": {_sessions(blockers)}; end them ({kill}) or have them commit"
        else:
            who = " (ERROR 1205: lock wait timeout exceeded); end them or have them commit"
        return LockTimeout(
            f"{step} waited {seconds} s for other sessions holding the tables of "
            f"'{self.live}'{who}, or pass a longer --lock-timeout"
            + (f"; {outcome}" if outcome else "")
        )


def _blocker(row: Sequence[Any]) -> Blocker:
    """A row of ``OtherSessions.holding``'s query."""
    session, user, host, command, state, seconds, started, open_for = row
    doing = as_text(command)
    if doing != "Sleep" and state:
        doing += f": {as_text(state)}"
    return Blocker(
        id=int(session),
        account=f"{as_text(user)}@{as_text(host)}",
        command=doing,
        seconds=int(seconds or 0),
        started=None if started is None else str(started),
        open_for=None if open_for is None else int(open_for),
    )
