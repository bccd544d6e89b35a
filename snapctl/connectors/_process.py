"""Running the engines' own tools: one place for spawning, streaming and secret handling.

Children get their output file as a file descriptor (no copy through Python), their
secrets through a 0600 file or their own environment (never argv), and a failure becomes one
line of their stderr with every secret masked. ``run_parallel`` runs several at once and
stops them all at the first failure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from snapctl.errors import ConfigurationError, OperationFailed

_STDERR_LIMIT = 64 * 1024
_POLL_SECONDS = 0.02
_SPLICE_CHUNK = 1024 * 1024


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
    """The most telling line of a tool's stderr: the first that says error (with the detail
    line PostgreSQL's tools put after it, which often names the cause), else the last."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for number, line in enumerate(lines):
        lowered = line.lower()
        if "error" in lowered or "fatal" in lowered:
            following = lines[number + 1] if number + 1 < len(lines) else ""
            if following.lower().startswith(("detail:", "pg_dump: detail:", "pg_restore: detail:")):
                return f"{line} ({following})"
            return line
    return lines[-1] if lines else ""


def tool_failure(
    what: str, returncode: int, stderr: str, secrets: Sequence[str]
) -> OperationFailed:
    """One line for a tool that failed: its error, or the signal that killed it."""
    message = mask(first_error_line(stderr), secrets)
    if returncode < 0:
        cause = signal.strsignal(-returncode) or f"signal {-returncode}"
        return OperationFailed(
            f"{what} was killed by {signal.Signals(-returncode).name} ({cause.lower()})"
            + (f": {message}" if message else "")
        )
    if not message:
        return OperationFailed(f"{what} failed with exit status {returncode} and no message")
    return OperationFailed(f"{what} failed (exit {returncode}): {message}")


def _tail(stream: IO[bytes]) -> str:
    """The end of a tool's captured stderr."""
    stream.seek(max(0, stream.seek(0, os.SEEK_END) - _STDERR_LIMIT))
    return stream.read().decode("utf-8", "replace")


# snapctl's own secrets, which no database tool needs to see.
_WITHHELD = ("SNAPCTL_SANITIZE_KEY",)


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """This process's environment, without snapctl's own secrets, plus the child's own
    variables (secrets go only here)."""
    inherited = {key: value for key, value in os.environ.items() if key not in _WITHHELD}
    return {**inherited, **(extra or {})}


@contextlib.contextmanager
def _ended_with_us(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    """If snapctl stops waiting (Ctrl-C, SIGTERM, an error), its tools stop too: none is
    left running on its own. (kill -9 of snapctl alone leaves them, by design: see the
    fault tests.)"""
    try:
        yield
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise


def _spawn(argv: Sequence[str], env: Mapping[str, str], **streams: Any) -> subprocess.Popen[bytes]:
    """Start a tool; a tool that cannot start at all is a configuration error."""
    try:
        return subprocess.Popen(list(argv), env=dict(env), **streams)
    except OSError as exc:
        raise ConfigurationError(f"cannot run {argv[0]}: {exc.strerror}") from exc


def run(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    stdin: Path | None = None,
    stdout: Path | BinaryIO | None = None,
    secrets: Sequence[str] = (),
) -> str:
    """Run a tool to completion; stream stdin/stdout from/to files (``stdout`` may be a file
    already open, for tools writing one after another into it); return its stdout if not
    redirected. A non-zero exit raises OperationFailed naming ``what`` and the tool's error."""
    with contextlib.ExitStack() as stack:
        stdin_file = stack.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL
        stdout_file: Any = subprocess.PIPE
        if isinstance(stdout, Path):
            stdout_file = stack.enter_context(open(stdout, "wb"))
        elif stdout is not None:
            stdout_file = stdout
        proc = _spawn(
            argv, _child_env(env), stdin=stdin_file, stdout=stdout_file, stderr=subprocess.PIPE
        )
        with _ended_with_us(proc):
            out, err = proc.communicate()
    if proc.returncode != 0:
        stderr_text = err[-_STDERR_LIMIT:].decode("utf-8", "replace")
        raise tool_failure(what, proc.returncode, stderr_text, secrets)
    return out.decode("utf-8", "replace") if out is not None else ""


def _read_head(fd: int, size: int) -> bytes:
    """The first ``size`` bytes from ``fd`` (fewer only at its end)."""
    head = b""
    while len(head) < size:
        chunk = os.read(fd, size - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _move_all(source: int, dest: int) -> None:
    """Everything from the pipe ``source`` into ``dest``; through the kernel where it can
    (splice, Linux), so a dump's bytes never pass through Python."""
    splice = getattr(os, "splice", None)
    while True:
        if splice is not None:
            try:
                if not splice(source, dest, _SPLICE_CHUNK):
                    return
                continue
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                splice = None  # a destination splice cannot write: copy instead
        chunk = os.read(source, _SPLICE_CHUNK)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(dest, view) :]


def run_into(
    argv: Sequence[str],
    dest: Path,
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    head: int = 0,
) -> bytes:
    """Run a tool whose standard output goes, front to back, into ``dest`` (a file, or the
    named pipe a streamed dump is received through), and return its first ``head`` bytes.
    A failure is raised as ``run`` raises it; if ``dest`` stops taking the output, the tool
    is ended and the write error raised."""
    with tempfile.TemporaryFile() as err:
        proc = _spawn(
            argv, _child_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout is not None
        try:
            with open(dest, "wb") as out:
                first = _read_head(proc.stdout.fileno(), head)
                out.write(first)
                out.flush()
                _move_all(proc.stdout.fileno(), out.fileno())
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            with _ended_with_us(proc):
                proc.wait()
        if proc.returncode != 0:
            raise tool_failure(what, proc.returncode, _tail(err), secrets)
    return first


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
    child_env = _child_env(env)
    with tempfile.TemporaryFile() as producer_err, tempfile.TemporaryFile() as consumer_err:
        first = _spawn(
            producer,
            child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=producer_err,
        )
        assert first.stdout is not None
        try:
            second = _spawn(
                consumer,
                child_env,
                stdin=first.stdout,
                stdout=subprocess.DEVNULL,
                stderr=consumer_err,
            )
        except ConfigurationError:
            first.kill()
            first.wait()
            raise
        finally:
            first.stdout.close()  # the consumer holds the only read end now
        with _ended_with_us(second, first):
            second.wait()
            first.wait()
        for proc, err in ((second, consumer_err), (first, producer_err)):
            if proc.returncode != 0:
                raise tool_failure(what, proc.returncode, _tail(err), secrets)


@dataclass(frozen=True)
class Job:
    """One tool run for ``run_parallel``: its argv, what it does (for errors), its input."""

    argv: Sequence[str]
    what: str
    stdin: Path


@dataclass
class _Started:
    job: Job
    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    stderr: IO[bytes]

    def close(self) -> None:
        self.stdin.close()
        self.stderr.close()

    def failure(self, secrets: Sequence[str]) -> OperationFailed:
        return tool_failure(self.job.what, self.proc.returncode, _tail(self.stderr), secrets)


def run_parallel(
    jobs: Sequence[Job],
    *,
    limit: int,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> None:
    """Run ``jobs``, at most ``limit`` at a time, started in the order given, each reading its
    stdin file directly. The first failure ends the others (killed: they would only waste
    time) and is raised as ``run`` raises it; so is Ctrl-C, after the same cleanup."""
    child_env = _child_env(env)
    waiting = list(jobs)
    running: list[_Started] = []
    try:
        while waiting or running:
            while waiting and len(running) < max(1, limit):
                running.append(_start(waiting.pop(0), child_env))
            done = _wait_any(running)
            running.remove(done)
            failure = done.failure(secrets) if done.proc.returncode != 0 else None
            done.close()
            if failure is not None:
                raise failure
    finally:
        for started in running:
            started.proc.kill()
            started.proc.wait()
            started.close()


def _start(job: Job, env: dict[str, str]) -> _Started:
    stdin = open(job.stdin, "rb")  # noqa: SIM115 - closed by _Started.close
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - a file, not a pipe: no deadlock
    try:
        proc = _spawn(job.argv, env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr)
    except ConfigurationError:
        stdin.close()
        stderr.close()
        raise
    return _Started(job, proc, stdin, stderr)


def _wait_any(running: Sequence[_Started]) -> _Started:
    """The first of ``running`` to exit. Polled: os.wait() could reap another's child."""
    while True:
        for started in running:
            if started.proc.poll() is not None:
                return started
        time.sleep(_POLL_SECONDS)
