"""Write files and folders so that a crash or kill never leaves them half-written.

Every output of MathPal (data splits, the tiny model, reports, resolved recipes)
is produced in a temporary sibling and renamed into place: renames within one
filesystem are atomic, so readers see the old version or the new one, never a mix.
The result gets the permissions the umask allows (``open_to_umask``), as if written in
place, and a full or read-only disk is one line naming the output (``WriteError``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Errors that mean "this place cannot hold the output": worded as one line naming the path.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO}


# How a library that does its own I/O outside Python (safetensors, in Rust) reports an OS error.
FOREIGN_OS_ERROR = re.compile(r"\(os error (\d+)\)")


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


def disk_error(err: BaseException) -> OSError | None:
    """``err`` as the OSError of a place that cannot hold the output (a full or read-only disk), else None.

    Also when a library wrapped it: safetensors raises ``SafetensorError("… No space left on device
    (os error 28)")``, which is no OSError.
    """
    if isinstance(err, OSError):
        return err if err.errno in DISK_ERRNOS else None
    found = FOREIGN_OS_ERROR.search(str(err))
    if found and int(found.group(1)) in DISK_ERRNOS:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return None


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


def umask() -> int:
    """This process's umask, read without changing it (Linux's /proc), else set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_to_umask(path: Path) -> None:
    """Give ``path`` and everything in it the modes a plain ``mkdir`` or ``open`` would: 0777 (folders) or
    0666 (files, keeping execute bits) less the umask. ``tempfile`` makes its folders 0700 and files 0600
    whatever the umask, and some savers write through it: so a group that may read the outputs can."""
    mask = umask()
    path = Path(path)
    entries = [(path, False)]
    if path.is_dir() and not path.is_symlink():
        for folder, folders, files in os.walk(path):
            entries += [(Path(folder) / name, False) for name in folders]
            entries += [(Path(folder) / name, True) for name in files]
        entries[0] = (path, False)
    else:
        entries = [(path, True)]
    for entry, is_file in entries:
        try:
            if entry.is_symlink():
                continue
            mode = 0o666 | (entry.stat().st_mode & 0o111) if is_file else 0o777
            os.chmod(entry, mode & ~mask)
        except OSError:  # not ours to change: leave it
            pass


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
        open_to_umask(staging)
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
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        disk = disk_error(err)
        if disk is not None:
            raise write_error(target, disk) from None
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
        os.chmod(temp, 0o666 & ~umask())
        os.replace(temp, target)
    except BaseException as err:
        if os.path.exists(temp):
            os.unlink(temp)
        if disk_error(err) is not None:
            raise write_error(target, disk_error(err)) from None
        raise
    return target


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks: data files, adapters, the export's manifest."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
