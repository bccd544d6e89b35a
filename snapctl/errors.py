"""The errors snapctl expects, each with the exit code the command line turns it into.

Exit codes (documented in README.md):
0 ok, 1 the operation failed, 2 usage or configuration error, 3 snapshot integrity or
compatibility error; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM): docker stop, systemd, CI runners


class SnapctlError(Exception):
    """An expected failure: its message is one line that says what is wrong and what to do."""

    exit_code = EXIT_FAILED


class OperationFailed(SnapctlError):
    """A dump or restore that started and could not finish (server gone, tool failed)."""

    exit_code = EXIT_FAILED


class ConfigurationError(SnapctlError):
    """Bad usage or setup: no settings, unknown alias, missing binary, bad option."""

    exit_code = EXIT_USAGE


class SnapshotNotFound(ConfigurationError):
    """A snapshot reference that names nothing in the store."""


class ConfirmationRequired(ConfigurationError):
    """A destructive command run without a terminal and without ``--yes``."""


class IntegrityError(SnapctlError):
    """A snapshot that is damaged, tampered with, or does not fit this database."""

    exit_code = EXIT_INTEGRITY


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds exactly as Ctrl-C does:
    children ended, secret files removed, partial snapshots dropped."""
