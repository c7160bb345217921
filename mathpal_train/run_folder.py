"""One run per ``output_dir``, and a finished run's files kept until a new run really trains.

Two faults made a run's folder say what did not happen:

* two ``mathpal train`` into one folder, started seconds apart, both ran: the second rewrote
  the resolved recipe before the first job read it, and the log interleaved both. So a launch
  holds ``lock``: an exclusive ``flock`` on the folder itself, taken after every check passed
  and held by ``mathpal train`` and the launcher it starts. The kernel drops it when they
  exit, however they exit, so a killed run never leaves a stale lock, and no file is added;
* a rerun that failed before training (a bad value, a model that does not load, a Ctrl-C
  during start-up) had already replaced the finished run's record and recipe, so ``eval``
  refused the unchanged adapter and ``merge`` copied the wrong recipe. So a launch writes its
  resolved recipe and record into ``pending/`` (``write_pending``), and ``RunStatePlugin``
  moves them into place when the trainer exists, right before Axolotl writes anything of the
  new run into the folder (``promote_pending``). A launch that ends before that leaves the
  folder as it was (Axolotl's ``debug.log``, which it truncates at start-up, is put back) and
  its own record in ``pending/mathpal_run.json``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mathpal_common.atomic_files import check_writable, write_error, write_text_atomic
from mathpal_train.recipes import RESOLVED_RECIPE_NAME
from mathpal_train.run_record import RUN_RECORD, read_record, write_record

PENDING_DIR = "pending"
# Axolotl's log in output_dir: truncated when a run starts unless it resumes (axolotl.utils.tee).
DEBUG_LOG = "debug.log"


class FolderInUse(ValueError):
    """Another launch holds the folder; the message is one line naming it."""


def check_free(output_dir: Path) -> None:
    """Refuse, before anything is printed or written, a folder that cannot take a launch now: one that
    cannot be written, or one held by a live launch (``lock`` takes it for real, later)."""
    output_dir = Path(output_dir)
    check_writable(output_dir / RESOLVED_RECIPE_NAME)
    if not output_dir.is_dir():
        return
    fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise FolderInUse(busy_line(output_dir)) from None
        raise
    finally:
        os.close(fd)  # closing drops the probe's lock


@contextmanager
def lock(output_dir: Path) -> Iterator[int]:
    """Hold ``output_dir`` for one launch; yields the lock's file descriptor, for the job to inherit.

    Creates the folder when it is new. A folder held by a live launch is a ``FolderInUse``.
    """
    output_dir = Path(output_dir)
    check_writable(output_dir / RESOLVED_RECIPE_NAME)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise write_error(output_dir, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise FolderInUse(busy_line(output_dir)) from None
            raise
        yield fd
    finally:
        os.close(fd)


def busy_line(output_dir: Path) -> str:
    """Why ``output_dir`` cannot take a launch now, naming the live launch from its record."""
    live = read_record(Path(output_dir) / PENDING_DIR) or read_record(output_dir)
    who = f" (pid {live['pid']}, started {live.get('started_at', '?')})" if live.get("pid") else ""
    return (
        f"{output_dir} is in use by a `mathpal train` that is still running{who}: wait for it to end, "
        "or train into another folder (--set output_dir=outputs/NAME)"
    )


def write_pending(output_dir: Path, recipe_text: str, record: dict[str, Any]) -> Path:
    """Write the new launch's recipe and record into ``pending/``; return the recipe's path (what is launched).

    Axolotl's ``debug.log`` of the run in the folder is kept beside them (a hard link: no copy),
    since Axolotl truncates it before it knows whether the new run will train.
    """
    pending = Path(output_dir) / PENDING_DIR
    shutil.rmtree(pending, ignore_errors=True)  # an earlier launch that never trained
    recipe = write_text_atomic(pending / RESOLVED_RECIPE_NAME, recipe_text)
    write_record(pending, record)
    log = Path(output_dir) / DEBUG_LOG
    if log.is_file():
        try:
            os.link(log, pending / DEBUG_LOG)
        except OSError:
            shutil.copy2(log, pending / DEBUG_LOG)
    return recipe


def read_pending(output_dir: Path) -> dict[str, Any] | None:
    """The record of a launch that has not started training (yet, or ever); None when there is none."""
    return read_record(Path(output_dir) / PENDING_DIR) or None


def promote_pending(output_dir: Path) -> bool:
    """Training starts: the pending record (now "training") and recipe replace the folder's; False when
    there is nothing pending (a run launched by hand, or another process promoted it first).

    The record moves first: from then on the folder says a new run is training, so nothing
    trusts the old adapter, even for the instant before the recipe follows.
    """
    output_dir = Path(output_dir)
    pending = output_dir / PENDING_DIR
    record = read_record(pending)
    if not record:
        return False
    record.update(status="training", training_started_at=now())
    write_record(pending, record)
    try:
        os.replace(pending / RUN_RECORD, output_dir / RUN_RECORD)
        os.replace(pending / RESOLVED_RECIPE_NAME, output_dir / RESOLVED_RECIPE_NAME)
    except FileNotFoundError:  # a second node's launcher on a shared folder got there first
        return False
    shutil.rmtree(pending, ignore_errors=True)
    return True


def settle_pending(output_dir: Path, status: dict[str, Any]) -> Path | None:
    """The launch ended before training started: record how (``status``) in its pending record and put
    the kept ``debug.log`` back. Returns the pending record's path; None when the launch had trained."""
    pending = Path(output_dir) / PENDING_DIR
    record = read_record(pending)
    if not record:
        return None
    record.update(status, ended_at=now())
    path = write_record(pending, record)
    if (pending / DEBUG_LOG).is_file():
        os.replace(pending / DEBUG_LOG, Path(output_dir) / DEBUG_LOG)
    return path


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
