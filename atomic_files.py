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


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(target: Path, text: str) -> Path:
    """Write ``text`` to ``target`` through a temporary file in the same folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=f".{target.name}.", delete=False, encoding="utf-8") as fh:
        fh.write(text)
    try:
        os.replace(fh.name, target)
    except BaseException:
        os.unlink(fh.name)
        raise
    return target
