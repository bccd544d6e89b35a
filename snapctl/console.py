"""The command's entry point, kept apart from the command line itself so that Ctrl-C or
SIGTERM while the command line is still being imported is one line too, not a traceback."""

from __future__ import annotations

import signal
import sys

from snapctl.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def interrupted(exc: KeyboardInterrupt) -> int:
    """Say, in one line, that snapctl was interrupted; return the exit code for it."""
    terminated = isinstance(exc, Terminated)
    sys.stderr.write(f"snapctl: {'terminated' if terminated else 'interrupted'}\n")
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def main() -> None:
    """SIGTERM (docker stop, systemd, CI runners) unwinds as Ctrl-C does: tools ended, secret
    files removed, partial snapshots dropped (see errors.Terminated)."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        from snapctl.cli import app

        app(prog_name="snapctl")
    except KeyboardInterrupt as exc:
        sys.exit(interrupted(exc))
