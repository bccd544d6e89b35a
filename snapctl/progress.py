"""Progress of the steps of a command: what the library reports, and how a terminal shows it.

The library (operations/) only says which step runs and, where it can, how many bytes it
has done and of how many; the command line shows that on stderr when stderr is a terminal.
A step whose bytes cannot be counted (a connector restoring) shows a spinner and the time,
never a made-up "0/? bytes".
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.progress import Task
    from rich.text import Text

# How many bytes a step has done so far; called from another thread, a few times a second.
Measure = Callable[[], int]


class Progress(Protocol):
    """Where the command line shows progress."""

    def track(
        self, description: str, measure: Measure | None = None, total: int | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """A step in progress: ``measure`` counts its bytes done, of ``total`` if known."""
        ...


class NoProgress:
    def track(
        self, description: str, measure: Measure | None = None, total: int | None = None
    ) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def file_size(path: Path) -> Measure:
    """The size of a file being written (0 until it exists)."""

    def measure() -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    return measure


def read_position(fd: int) -> Measure:
    """How far a file open as ``fd`` has been read."""
    return lambda: os.lseek(fd, 0, os.SEEK_CUR)


class TerminalProgress:
    """Progress on stderr: each step with its bytes, rate and elapsed time when it can be
    measured, a spinner and the elapsed time when not."""

    def __init__(self) -> None:
        from rich import filesize
        from rich.console import Console
        from rich.progress import (
            DownloadColumn,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Display
        from rich.text import Text

        class MeasuredOnly(ProgressColumn):
            """A column shown only for steps whose bytes are counted."""

            def __init__(self, column: ProgressColumn) -> None:
                super().__init__()
                self.column = column

            def render(self, task: Task) -> Text:
                if not task.fields.get("measured"):
                    return Text("")
                return self.column.render(task)  # type: ignore[return-value]

        class Bytes(DownloadColumn):
            """Bytes done of the total, or only bytes done where no total is known (a dump
            being written): never "/?"."""

            def render(self, task: Task) -> Text:
                if task.total is None:
                    return Text(filesize.decimal(int(task.completed)), style="progress.download")
                return super().render(task)

        self.display = Display(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            MeasuredOnly(Bytes()),
            MeasuredOnly(TransferSpeedColumn()),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )

    @contextlib.contextmanager
    def track(
        self, description: str, measure: Measure | None = None, total: int | None = None
    ) -> Iterator[None]:
        task = self.display.add_task(description, total=total, measured=measure is not None)

        def update() -> None:
            if measure is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.display.update(task, completed=measure())

        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(0.2):
                update()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()
            update()
            step = next(each for each in self.display.tasks if each.id == task)
            done = step.completed if measure is not None else 1
            self.display.update(task, total=done or 1, completed=done or 1)
            if measure is not None and step.finished_speed is None and step.elapsed:
                # Too quick for two samples: the average rate, not "?".
                step.finished_speed = done / step.elapsed
