"""How snapctl treats the other people and processes using a database it restores.

A restore needs a moment of exclusive access, and other sessions (a forgotten `manage.py
shell`, a worker, a report) may hold locks or transactions. snapctl never waits silently and
never holds others up for long: it waits for their locks at most ``lock_timeout`` seconds,
saying what it waits for, and fails naming them after that. Ending sessions of the same
role (PostgreSQL's swap) is announced first, and ``--no-terminate`` refuses instead.

The command line sets the policy (``--lock-timeout``, ``--no-terminate``), over
``SNAPSHOTS["LOCK_TIMEOUT"]`` and ``SNAPSHOTS["TERMINATE_SESSIONS"]``; connectors read it
here and tell the person at the terminal through ``notices.notice``.
"""

from __future__ import annotations

from dataclasses import dataclass

from snapctl.errors import ConfigurationError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "Policy", "configure", "policy"]

# Seconds: long enough for a short transaction of the application to end, short enough that
# the application's queries queued behind snapctl's lock are not held up for long.
DEFAULT_LOCK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Policy:
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    terminate: bool = True


_given: dict[str, object] = {}


def configure(*, lock_timeout: float | None = None, terminate: bool | None = None) -> None:
    """What the command line says: each value given wins over the settings."""
    if lock_timeout is not None:
        _given["lock_timeout"] = lock_timeout
    if terminate is not None:
        _given["terminate"] = terminate


def policy() -> Policy:
    """The policy for this command: the command line's values, else the settings', else
    the defaults."""
    from snapctl.django_env import settings_loaded, snapshot_settings

    configured = snapshot_settings() if settings_loaded() else {}
    lock_timeout = _given.get("lock_timeout", configured.get("LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float):
        raise ConfigurationError(
            f"SNAPSHOTS['LOCK_TIMEOUT'] is {lock_timeout!r}; give a number of seconds"
        )
    if lock_timeout < 0:
        raise ConfigurationError(f"the lock timeout is {lock_timeout}; give 0 or more seconds")
    terminate = _given.get("terminate", configured.get("TERMINATE_SESSIONS", True))
    return Policy(lock_timeout=float(lock_timeout), terminate=bool(terminate))
