"""Faults a long run meets, done for real: read-only and full disks, an unreachable Comet, a killed writer.

Read-only folders are read-only bind mounts and full disks are small tmpfs mounts, both made
in a private mount namespace (``unshare``) that disappears with the command, so the kernel
refuses the writes exactly as it would on a user's machine (root included).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mathpal_common.comet import read_offline_assets
from tests.conftest import write_recipe_inputs
from tests.test_cli_eval import score_rows, write_jsonl

REPO = Path(__file__).resolve().parents[1]
MATHPAL = shlex.join([sys.executable, "-m", "mathpal_cli"])


def mathpal(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mathpal_cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def in_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace: its mounts exist for it alone, and vanish after."""
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    return subprocess.run([*unshare, "sh", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=600)


def read_only(folder: str) -> str:
    return f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder}"


def last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), stderr[-2000:]
    return lines[-1]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("faults")
    result = mathpal("seed-qdrant", "--problems", "60", "--qdrant-path", "qdrant", cwd=work)
    assert result.returncode == 0, result.stderr
    return work / "qdrant"


@pytest.fixture()
def work(tmp_path, store) -> Path:
    (tmp_path / "qdrant").symlink_to(store)
    return tmp_path


# --------------------------------------------------------------------------- read-only places, checked before any work


def test_prepare_data_into_a_read_only_folder_refuses_before_reading(work):
    (work / "area").mkdir()
    result = in_namespace(
        f"{read_only('area')} && exec {MATHPAL} prepare-data --qdrant-path qdrant --out area/data", work
    )
    assert result.returncode == 2
    assert last_error(result.stderr) == (
        "error: cannot write area/data: Read-only file system (pass a folder on a writable disk); "
        "the previous version, if any, is kept"
    )
    assert "Exported" not in result.stdout and list((work / "area").iterdir()) == []


@pytest.mark.slow
def test_a_read_only_previous_export_is_kept_and_nothing_piles_up(work):
    assert mathpal("prepare-data", "--qdrant-path", "qdrant", "--out", "data", cwd=work).returncode == 0
    before = tree(work / "data")
    for _ in range(2):
        result = in_namespace(
            f"{read_only('data')} && exec {MATHPAL} prepare-data --qdrant-path qdrant --out data", work
        )
        assert result.returncode == 2
        assert last_error(result.stderr) == (
            "error: cannot write data: it is read-only (make it writable or pass another path)"
        )
    assert tree(work / "data") == before
    assert sorted(p.name for p in work.iterdir()) == ["data", "qdrant"]  # no .data.old-PID, no staging


@pytest.mark.slow
def test_score_and_eval_refuse_a_read_only_report_folder_before_grading(work):
    predictions = write_jsonl(work / "preds.jsonl", score_rows(1, 2, 3))
    (work / "reports").mkdir()
    script = f"{read_only('reports')} && {MATHPAL} score preds.jsonl --no-comet; echo score=$?; "
    script += f"{MATHPAL} eval --model nowhere/model --data preds.jsonl --no-comet; echo eval=$?"
    result = in_namespace(script, work)
    assert "score=2" in result.stdout and "eval=2" in result.stdout, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert (
        errors
        == [
            "error: cannot write reports/<time>: Read-only file system (pass a folder on a writable disk); "
            "the previous version, if any, is kept"
        ]
        * 2
    )
    assert predictions.is_file() and list((work / "reports").iterdir()) == []


@pytest.mark.slow
def test_train_refuses_a_read_only_output_folder_before_launching(work, tiny_model_dir):
    (work / "outputs").mkdir()
    write_recipe_inputs(work, tiny_model_dir)
    script = f"{read_only('outputs')} && exec {MATHPAL} train {REPO / 'recipes' / 'smoke.yml'} --num-gpus 0"
    result = in_namespace(script, work)
    assert result.returncode == 2
    assert last_error(result.stderr).startswith(
        "error: cannot write outputs/smoke/recipe.resolved.yml: Read-only file system"
    )
    assert "accelerate" not in result.stdout


@pytest.mark.slow
def test_tiny_model_refuses_a_read_only_folder_before_training_its_tokenizer(work):
    (work / "data").mkdir()
    row = {"messages": [{"role": "user", "content": "Tính 2 + 3."}, {"role": "assistant", "content": "Đáp số: 5"}]}
    (work / "data" / "train.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    (work / "models").mkdir()
    result = in_namespace(f"{read_only('models')} && exec {MATHPAL} tiny-model --out models/tiny", work)
    assert result.returncode == 2
    assert last_error(result.stderr).startswith("error: cannot write models/tiny: Read-only file system")


# --------------------------------------------------------------------------- a disk that fills up while writing


@pytest.mark.slow
def test_a_full_disk_during_prepare_data_is_one_line_and_keeps_the_previous_export(work):
    (work / "disk").mkdir()
    (work / "prompt.txt").write_text("Bạn là MathPal. " * 12_500)  # 200 kB a row: the export no longer fits
    script = (
        "mount -t tmpfs -o size=512k tmpfs disk && "
        f"{MATHPAL} prepare-data --qdrant-path qdrant --out disk/data > /dev/null && "
        "sha256sum disk/data/* > before.txt && "
        f"{MATHPAL} prepare-data --qdrant-path qdrant --out disk/data --system-prompt-file prompt.txt; echo rc=$?; "
        "sha256sum disk/data/* > after.txt; ls -A disk > listing.txt"
    )
    result = in_namespace(script, work)
    assert "rc=2" in result.stdout, result.stdout + result.stderr
    assert last_error(result.stderr) == (
        "error: cannot write disk/data: No space left on device (free some space); "
        "the previous version, if any, is kept"
    )
    assert "Traceback" not in result.stderr
    assert (work / "after.txt").read_text() == (work / "before.txt").read_text()
    assert (work / "listing.txt").read_text().split() == ["data"]  # no staging folder left


@pytest.mark.slow
def test_a_full_disk_under_the_comet_archive_never_ends_in_success(work):
    """The report fits on the disk, its Comet offline archive does not: score fails in one line, writes nothing."""
    predictions = write_jsonl(work / "preds.jsonl", score_rows(30, 50, 80))
    free = mathpal("score", str(predictions), "--report-dir", "measure", cwd=work)
    assert free.returncode == 0, free.stderr
    pages = [-(-p.stat().st_size // 4096) for p in (work / "measure").iterdir() if p.is_file()]  # tmpfs counts pages
    (archive,) = (work / "measure" / "comet").glob("*.zip")
    size_k = 4 * (sum(pages) + archive.stat().st_size // 4096 // 2)
    (work / "disk").mkdir()
    script = f"mount -t tmpfs -o size={size_k}k tmpfs disk && {MATHPAL} score preds.jsonl --report-dir disk/r; "
    script += "echo rc=$?; ls -A disk > listing.txt"
    result = in_namespace(script, work)
    assert "rc=2" in result.stdout, result.stdout + result.stderr
    assert last_error(result.stderr).startswith("error: cannot write disk/r: ")
    assert "report:" not in result.stdout
    assert (work / "listing.txt").read_text().split() == []


# --------------------------------------------------------------------------- a writer killed half-way


@pytest.mark.slow
def test_a_killed_score_leaves_nothing_the_next_run_does_not_tidy(work):
    predictions = write_jsonl(work / "preds.jsonl", score_rows(300, 500, 800))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mathpal_cli", "score", str(predictions)],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reports = work / "reports"
    deadline = time.monotonic() + 120
    while not (reports.is_dir() and [p for p in reports.iterdir() if p.name.startswith(".")]):
        assert proc.poll() is None, "score ended before it started writing"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in reports.iterdir() if p.name.startswith(".")], "the kill left a staging folder"
    again = mathpal("score", str(write_jsonl(work / "small.jsonl", score_rows(1, 1, 2))), "--no-comet", cwd=work)
    assert again.returncode == 0, again.stderr
    assert [p.name for p in reports.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- Comet unreachable with a key


@pytest.mark.slow
def test_prepare_data_artifact_with_an_unreachable_comet_keeps_the_export_and_an_archive(work):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/clientlib/"
    env = {**os.environ, "COMET_API_KEY": "not-a-real-key", "COMET_URL_OVERRIDE": url}
    started = time.monotonic()
    result = mathpal("prepare-data", "--qdrant-path", "qdrant", "--log-artifact", cwd=work, env=env)
    assert time.monotonic() - started < 60  # interpreter start included; the probe gives up after 10 s
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "Comet offline archive" in line]
    assert line.startswith(f"CometML server {url} unreachable within 10 s (ConnectionError); Comet offline archive")
    (archive,) = (work / "reports" / "prepare-data" / "comet").glob("*.zip")
    manifest = json.loads((work / "data" / "manifest.json").read_text())
    assert read_offline_assets(archive)["manifest.json"][1] == (work / "data" / "manifest.json").read_bytes()
    assert manifest["counts"]["kept"] > 0


@pytest.mark.slow
def test_merge_and_tiny_model_on_a_full_disk_are_one_line_and_leave_nothing(work, trained_run_dir):
    """The model files no longer fit (a 300 KiB tmpfs): safetensors' own I/O error becomes the one line."""
    (work / "data").mkdir()
    row = {"messages": [{"role": "user", "content": "Tính 2 + 3."}, {"role": "assistant", "content": "Đáp số: 5"}]}
    text = json.dumps(row, ensure_ascii=False) + "\n\n"  # a blank line too: skipped, as Axolotl skips it
    (work / "data" / "train.jsonl").write_text(text, encoding="utf-8")
    (work / "disk").mkdir()
    script = f"mount -t tmpfs -o size=300k tmpfs disk && {MATHPAL} tiny-model --out disk/tiny; echo tiny=$?; "
    script += (
        f"{MATHPAL} merge {shlex.quote(str(trained_run_dir))} --out disk/merged; echo merge=$?; ls -A disk > ls.txt"
    )
    result = in_namespace(script, work)
    assert "tiny=2" in result.stdout and "merge=2" in result.stdout, result.stdout + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        f"error: cannot write disk/{name}: No space left on device (free some space); the previous version, if any, "
        "is kept"
        for name in ("tiny", "merged")
    ]
    assert (work / "ls.txt").read_text().split() == []  # no staging folder left
