"""Write files and folders so that a crash or kill never leaves them half-written.

Every output of MathPal (data splits, the tiny model, reports, resolved recipes)
is produced in a temporary sibling and renamed into place: renames within one
filesystem are atomic, so readers see the old version or the new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep_killed(target: Path) -> list[Path]:
    """Tidy what a killed writer of ``target`` left beside it; return what was removed or restored.

    Folders are named ``.NAME.PID.*`` (staging) and ``.NAME.old-PID`` (the previous
    version, moved aside for the swap). A SIGKILL skips every ``finally``, so these can
    outlive their process. Only those whose PID is no longer running are touched: a
    staging folder is deleted; a moved-aside previous version goes back into place when
    the kill came between the two renames (``target`` missing), else it is deleted.
    """
    target = Path(target)
    touched = []
    if not target.parent.is_dir():
        return touched
    for path in sorted(target.parent.glob(f".{target.name}.*")):
        rest = path.name[len(target.name) + 2 :]
        pid_text = rest[4:] if rest.startswith("old-") else rest.split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)) or not path.is_dir():
            continue
        if rest.startswith("old-") and not target.exists():
            os.replace(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)
        touched.append(path)
    return touched


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; on success it replaces ``target``, on error it is removed.

    Leftovers of an earlier writer that was killed (SIGKILL runs no cleanup) are swept
    first, see ``sweep_killed``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_killed(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
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
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(target: Path, text: str) -> Path:
    """Write ``text`` to ``target`` through a temporary file in the same folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return target
