"""Running the engines' own tools: one place for spawning, streaming and secret handling.

Children get their output file as a file descriptor (no copy through Python), their
secrets through a 0600 file or their own environment (never argv), and a failure becomes one
line of their stderr with every secret masked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from snapctl.errors import ConfigurationError, OperationFailed

_STDERR_LIMIT = 64 * 1024


def find_binary(*candidates: str, package_hint: str) -> str:
    """Return the path of the first of ``candidates`` found on PATH."""
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    names = " or ".join(candidates)
    raise ConfigurationError(f"{names} not found on PATH; install {package_hint}")


def mask(text: str, secrets: Sequence[str]) -> str:
    """Replace every non-empty secret in ``text`` by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def first_error_line(stderr: str) -> str:
    """The most telling line of a tool's stderr: the first that says error, else the last."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        lowered = line.lower()
        if "error" in lowered or "fatal" in lowered:
            return line
    return lines[-1] if lines else "no message"


def run(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    stdin: Path | None = None,
    stdout: Path | None = None,
    secrets: Sequence[str] = (),
) -> str:
    """Run a tool to completion; stream stdin/stdout from/to files; return its stdout if not
    redirected. A non-zero exit raises OperationFailed naming ``what`` and the tool's error."""
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    with contextlib.ExitStack() as stack:
        stdin_file = stack.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL
        stdout_file = stack.enter_context(open(stdout, "wb")) if stdout else subprocess.PIPE
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=stdin_file,
                stdout=stdout_file,
                stderr=subprocess.PIPE,
                env=child_env,
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        out, err = proc.communicate()
    stderr_text = err[-_STDERR_LIMIT:].decode("utf-8", "replace")
    if proc.returncode != 0:
        message = mask(first_error_line(stderr_text), secrets)
        raise OperationFailed(f"{what} failed (exit {proc.returncode}): {message}")
    return out.decode("utf-8", "replace") if out is not None else ""


@contextlib.contextmanager
def private_file(content: str, suffix: str = "") -> Iterator[Path]:
    """A file only this user can read, holding ``content``, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="snapctl-", suffix=suffix)
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        yield path
    finally:
        path.unlink(missing_ok=True)


def pipe(
    producer: Sequence[str],
    consumer: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> None:
    """Run ``producer | consumer`` without a copy through Python or a file on disk.

    The consumer's failure is the one reported when both fail: it stops reading first, and
    the producer then only dies of the broken pipe.
    """
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    with tempfile.TemporaryFile() as producer_err, tempfile.TemporaryFile() as consumer_err:
        try:
            first = subprocess.Popen(
                list(producer),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=producer_err,
                env=child_env,
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot run {producer[0]}: {exc.strerror}") from exc
        assert first.stdout is not None
        try:
            second = subprocess.Popen(
                list(consumer),
                stdin=first.stdout,
                stdout=subprocess.DEVNULL,
                stderr=consumer_err,
                env=child_env,
            )
        except OSError as exc:
            first.kill()
            first.wait()
            raise ConfigurationError(f"cannot run {consumer[0]}: {exc.strerror}") from exc
        finally:
            first.stdout.close()  # the consumer holds the only read end now
        second.wait()
        first.wait()
        for proc, err in ((second, consumer_err), (first, producer_err)):
            if proc.returncode != 0:
                err.seek(max(0, err.seek(0, os.SEEK_END) - _STDERR_LIMIT))
                text = err.read().decode("utf-8", "replace")
                message = mask(first_error_line(text), secrets)
                raise OperationFailed(f"{what} failed (exit {proc.returncode}): {message}")
