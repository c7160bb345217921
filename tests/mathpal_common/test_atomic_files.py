"""Tests for atomic_files: staged folders and atomic text files never leave half-written output."""

from __future__ import annotations

import os

import pytest

from mathpal_common import atomic_files
from mathpal_common.atomic_files import staged_dir, write_text_atomic


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# --------------------------------------------------------------------------- staged_dir


def test_staged_dir_creates_target_on_success(tmp_path):
    target = tmp_path / "parent" / "out"
    with staged_dir(target) as staging:
        assert staging.parent == target.parent
        assert staging != target and list(staging.iterdir()) == []
        assert not target.exists()  # nothing visible until the block succeeds
        (staging / "a.txt").write_text("mới", encoding="utf-8")
    assert (target / "a.txt").read_text(encoding="utf-8") == "mới"
    assert [p.name for p in target.parent.iterdir()] == ["out"]


def test_staged_dir_replaces_existing_target_wholly(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_dir(target) as staging:
        assert (target / "old.txt").read_text() == "old"  # old output readable while staging
        (staging / "new.txt").write_text("new")
    assert snapshot(target) == {"new.txt": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no retired or staging folder


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_staged_dir_error_keeps_previous_target_and_removes_staging(tmp_path, exc):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(type(exc)):
        with staged_dir(target) as staging:
            (staging / "half.txt").write_text("half")
            raise exc
    assert snapshot(target) == {"keep.txt": b"keep"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_dir_error_without_previous_target_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with staged_dir(tmp_path / "out") as staging:
            (staging / "x").write_text("x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_staged_dir_failed_swap_keeps_previous_target(tmp_path, monkeypatch):
    # If moving the new folder into place fails (after the old one was moved aside), the
    # previous output must be put back, not left hidden under ".out.old-<pid>".
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", replace)
    with pytest.raises(OSError):
        with staged_dir(target) as staging:
            (staging / "new.txt").write_text("new")
    assert len(calls) == 3 and calls[2][1] == target  # the third rename puts the old folder back
    assert target.is_dir() and snapshot(target) == {"keep.txt": b"keep"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# --------------------------------------------------------------------------- write_text_atomic


def test_write_text_atomic_writes_utf8_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "report.md"
    assert write_text_atomic(target, "Đáp số: 60 cm²\n") == target
    assert target.read_bytes() == "Đáp số: 60 cm²\n".encode()
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_write_text_atomic_overwrites_without_leftovers(tmp_path):
    target = tmp_path / "recipe.yml"
    target.write_text("old: 1\n")
    write_text_atomic(target, "new: 2\n")
    assert target.read_text() == "new: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yml"]


def test_write_text_atomic_failed_rename_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "recipe.yml"
    target.write_text("old: 1\n")

    def fail(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(atomic_files.os, "replace", fail)
    with pytest.raises(OSError):
        write_text_atomic(target, "new: 2\n")
    assert target.read_text() == "old: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yml"]


def test_write_text_atomic_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    # A write that fails midway (here: text that cannot be encoded, as with a disk-full
    # error) must leave the old file and no ".recipe.yml.*" temporary behind.
    target = tmp_path / "recipe.yml"
    target.write_text("old: 1\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "new: 2\n" + "\ud800")
    assert target.read_text() == "old: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yml"]


# --------------------------------------------------------------------------- leftovers of a killed writer


def dead_pid() -> int:
    """The PID of a process that has exited."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staging_folder_names_carry_the_pid(tmp_path):
    with staged_dir(tmp_path / "out") as staging:
        assert staging.name.startswith(f".out.{os.getpid()}.")


def test_a_killed_writers_staging_folder_is_swept_by_the_next_write(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    pid = dead_pid()
    (tmp_path / f".data.{pid}.abc123").mkdir()
    (tmp_path / f".data.{pid}.abc123" / "half.jsonl").write_text("half")
    alive = tmp_path / f".data.{os.getpid()}.live"  # a running writer's staging: left alone
    alive.mkdir()
    unrelated = tmp_path / ".data-notes"
    unrelated.mkdir()
    with staged_dir(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".data-notes", alive.name, "data"])
    assert snapshot(target) == {"new.txt": b"new"}


def test_a_kill_between_the_two_renames_gets_the_previous_version_back(tmp_path):
    # Killed after moving the old output aside and before moving the new one in:
    # the output is missing and the previous version sits in .data.old-PID.
    pid = dead_pid()
    retired = tmp_path / f".data.old-{pid}"
    retired.mkdir()
    (retired / "keep.txt").write_text("old")
    restored = atomic_files.sweep_killed(tmp_path / "data")
    assert restored == [retired]
    assert snapshot(tmp_path / "data") == {"keep.txt": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_stale_previous_version_beside_a_present_output_is_removed(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "new.txt").write_text("new")
    stale = tmp_path / f".data.old-{dead_pid()}"
    stale.mkdir()
    atomic_files.sweep_killed(tmp_path / "data")
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert snapshot(tmp_path / "data") == {"new.txt": b"new"}


# --------------------------------------------------------------------------- permissions


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("mask, folder, file", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640), (0o077, 0o700, 0o600)])
def test_outputs_get_the_permissions_the_umask_allows(mask, folder, file, tmp_path):
    """tempfile makes 0700 folders and 0600 files whatever the umask; the outputs get what open() would give."""
    import tempfile

    previous = os.umask(mask)
    try:
        assert atomic_files.umask() == mask
        with staged_dir(tmp_path / "out") as staging:
            (staging / "sub").mkdir(mode=0o700)
            fd, saved = tempfile.mkstemp(dir=staging / "sub")  # a saver that writes through tempfile
            os.close(fd)
        write_text_atomic(tmp_path / "note.txt", "x")
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    assert (mode(out), mode(out / "sub")) == (folder, folder)
    assert mode(out / "sub" / os.path.basename(saved)) == file and mode(tmp_path / "note.txt") == file


def test_disk_errors_wrapped_by_a_library_are_recognised():
    from safetensors import SafetensorError

    wrapped = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert atomic_files.disk_error(wrapped).strerror == "No space left on device"
    assert atomic_files.disk_error(ValueError("bad value (os error 2)")) is None  # ENOENT is no disk problem
    assert atomic_files.disk_error(OSError(28, "full")).errno == 28
