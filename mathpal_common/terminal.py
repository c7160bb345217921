"""What the commands show on the terminal: progress bars and result lines, the same everywhere (rich).

``progress_display`` is the one progress layout: what is running, a bar, done of total, a rate and
the elapsed time. ``StageBars`` turns a pipeline's ``(event, n, total)`` callback (see
``dataprep.pipeline.Progress``) into one bar per stage, each showing its own rate. ``echo``
prints result lines as they are: no markup guessing, long lines wrapped by the terminal.
``library_noise`` keeps what libraries log off the terminal unless the user asks for it.
A terminal or pipe that goes away (``mathpal train … | head``) silences the output
(``silence_stdout``) instead of failing the command: what it was doing goes on.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_display(console: Console, transient: bool = True) -> Progress:
    """A ``rich.progress.Progress`` with our columns; each task carries a ``rate`` text field.

    Off when the console is not a terminal (logs and tests get the summary lines only).
    """
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, transient=transient, disable=not console.is_terminal)


class StageBars:
    """A pipeline progress callback: a new bar when a stage starts, counted work within it.

    ``stages`` maps a stage event to its bar's description; every other event adds ``n``
    to the current bar, and ``units`` names what that event counts ("points/s").
    """

    def __init__(self, progress: Progress, stages: dict[str, str], units: dict[str, str]) -> None:
        self.progress = progress
        self.stages = stages
        self.units = units
        self.current: int | None = None

    def __call__(self, kind: str, n: int, total: int) -> None:
        if kind in self.stages:
            if self.current is not None:
                self.progress.update(self.current, visible=False)
            self.current = self.progress.add_task(self.stages[kind], total=total or None, rate="")
            return
        if self.current is None:
            return
        task = self.progress.tasks[self.current]
        done = task.completed + n
        rate = f"{done / max(task.elapsed or 0, 1e-6):,.0f} {self.units.get(kind, '')}".rstrip()
        self.progress.update(self.current, completed=done, rate=rate)


def silence_stdout(fd: int = 1) -> None:
    """Point file descriptor ``fd`` (stdout) at /dev/null: its reader is gone, and every later print (ours,
    rich's, Python's flush at exit) must succeed silently rather than end the command."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def outlive_closed_pipe(console: Console) -> Console:
    """Make ``console`` go silent when its reader goes away, instead of rich's default: exit with status 1,
    which would end `mathpal train … | head` before its job even starts."""
    console.on_broken_pipe = lambda: silence_stdout(2 if console.stderr else 1)  # type: ignore[method-assign]
    return console


def stream_writer(console: Console) -> Callable[[str], None]:
    """Write text as it comes (a streamed answer): no newline added, flushed at once."""

    def write(text: str) -> None:
        try:
            console.file.write(text)
            console.file.flush()
        except BrokenPipeError:
            silence_stdout()

    return write


def echo(console: Console, *items: Any) -> None:
    """Print each item (text or a rich renderable such as a table) on its own, without highlighting."""
    try:
        for item in items:
            console.print(item, highlight=False, soft_wrap=True)
    except BrokenPipeError:
        silence_stdout()


@contextmanager
def library_noise(debug: bool = False) -> Iterator[None]:
    """Hide what libraries log below ERROR, and their Python warnings, unless ``debug``.

    Importing Axolotl loads torchao, which logs a warning for each CUDA extension a CPU
    build cannot load, and torch logs a pytree deprecation warning for two of torchao's
    enums; Axolotl's schema logs advice about settings this model cannot take (flash
    attention). None of it is something a user of ``validate``, ``ask`` or ``merge`` can act
    on; errors still show, and ``--debug`` shows everything.
    """
    if debug:
        yield
        return
    from transformers.utils import logging as transformers_logging

    previous = logging.root.manager.disable
    bars = transformers_logging.is_progress_bar_enabled()
    logging.disable(logging.WARNING)
    transformers_logging.disable_progress_bar()  # "Loading weights": a bar for a load that takes a second
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
        if bars:
            transformers_logging.enable_progress_bar()
