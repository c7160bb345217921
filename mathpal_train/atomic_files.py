"""Write files and folders so that a crash or kill never leaves them half-written.

Every output of MathPal (data splits, the tiny model, reports, resolved recipes)
is produced in a temporary sibling and renamed into place: renames within one
filesystem are atomic, so readers see the old version or the new one, never a mix.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Errors that mean "this place cannot hold the output": worded as one line naming the path.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO}


class WriteError(ValueError):
    """An output that cannot be written where it was asked for; the message is one line naming the path."""


def write_error(target: Path, err: OSError) -> WriteError:
    """``err`` as one line: which output, what went wrong, what to do."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    hint = {
        errno.ENOSPC: "free some space",
        errno.EDQUOT: "free some space",
        errno.EFBIG: "free some space",
        errno.EROFS: "pass a folder on a writable disk",
    }.get(err.errno, "fix its permissions or pass another folder")
    return WriteError(f"cannot write {target}: {reason} ({hint}); the previous version, if any, is kept")


def check_writable(target: Path) -> None:
    """Refuse, before any work, an output that could not be written: ``target`` (a file or a folder that is
    replaced as a whole) must be creatable in its parent folder, and replaceable when it exists."""
    target = Path(target)
    if target.exists() and not os.access(target, os.W_OK):
        raise WriteError(f"cannot write {target}: it is read-only (make it writable or pass another path)")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise WriteError(f"cannot write {target}: {parent} is not a folder")
    try:
        probe = tempfile.NamedTemporaryFile(dir=parent, prefix=f".{target.name}.probe.", delete=True)
    except OSError as err:
        raise write_error(target, err) from None
    probe.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep_killed(target: Path, every_name: bool = False) -> list[Path]:
    """Tidy what a killed writer of ``target`` left beside it; return what was removed or restored.

    Folders are named ``.NAME.PID.*`` (staging) and ``.NAME.old-PID`` (the previous
    version, moved aside for the swap). A SIGKILL skips every ``finally``, so these can
    outlive their process. Only those whose PID is no longer running are touched: a
    staging folder is deleted; a moved-aside previous version goes back into place when
    the kill came between the two renames (``NAME`` missing), else it is deleted.

    ``every_name`` sweeps the leftovers of every ``NAME`` in the folder, for folders of
    runs named by time (``reports/<timestamp>``), where no later write has the same name.
    """
    target = Path(target)
    touched = []
    if not target.parent.is_dir():
        return touched
    for path in sorted(target.parent.glob(".*.*" if every_name else f".{target.name}.*")):
        leftover = _leftover_of(path.name)
        if leftover is None or (not every_name and leftover[0] != target.name):
            continue
        name, pid, retired = leftover
        if _pid_alive(pid) or not path.is_dir():
            continue
        if retired and not (path.parent / name).exists():
            os.replace(path, path.parent / name)
        else:
            shutil.rmtree(path, ignore_errors=True)
        touched.append(path)
    return touched


def _leftover_of(folder_name: str) -> tuple[str, int, bool] | None:
    """``(NAME, PID, is the moved-aside previous version)`` of a ``.NAME.old-PID`` or
    ``.NAME.PID.RANDOM`` folder name; None for any other name."""
    if not folder_name.startswith("."):
        return None
    name, sep, pid = folder_name[1:].rpartition(".old-")
    if sep and name and pid.isdigit():
        return name, int(pid), True
    parts = folder_name[1:].rsplit(".", 2)
    if len(parts) == 3 and parts[0] and parts[1].isdigit():
        return parts[0], int(parts[1]), False
    return None


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; on success it replaces ``target``, on error it is removed.

    Leftovers of an earlier writer that was killed (SIGKILL runs no cleanup) are swept
    first, see ``sweep_killed``.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_killed(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    except OSError as err:
        raise write_error(target, err) from None
    try:
        yield staging
        if not target.exists():
            os.replace(staging, target)
            return
        retired = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, retired)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(retired, target)  # put the previous version back
            raise
        shutil.rmtree(retired, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if err.errno in DISK_ERRNOS:
            raise write_error(target, err) from None
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(target: Path, text: str) -> Path:
    """Write ``text`` to ``target`` through a temporary file in the same folder."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as err:
        raise write_error(target, err) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException as err:
        if os.path.exists(temp):
            os.unlink(temp)
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            raise write_error(target, err) from None
        raise
    return target
