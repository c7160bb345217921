"""``mathpal prepare-data`` as users run it: output, one-line errors, the Comet artifact, and SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mathpal_cli
from mathpal_cli import app
from mathpal_common.comet import ARTIFACT_METADATA
from tests.dataprep.conftest import _point, eid, seed_store

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
SPLIT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    """The bundled sample collection (80 problems), seeded once by `mathpal seed-qdrant`."""
    work = tmp_path_factory.mktemp("seeded")
    store = work / "qdrant"
    result = runner.invoke(app, ["seed-qdrant", "--problems", "80", "--qdrant-path", str(store)])
    assert result.exit_code == 0, result.output
    return store


def invoke(*args: str):
    return runner.invoke(app, ["prepare-data", *args], terminal_width=400)


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error: "), result.output
    return lines[-1]


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# --------------------------------------------------------------------------- success


def test_prepare_data_reports_throughput_and_writes_the_splits(in_tmp, sample_store):
    result = invoke("--qdrant-path", str(sample_store), "--out", "data")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    manifest = json.loads((in_tmp / "data" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert lines[0].startswith(f"Exported {counts['points_read']:,} points of 'vector_exams' at {sample_store} in ")
    assert lines[0].endswith(" points/s overall)")
    assert f"near-duplicates: {counts['near_duplicates_moved']} of " in result.output
    assert (
        f"Wrote data/: train {counts['splits']['train']}, validation {counts['splits']['validation']}, "
        f"test {counts['splits']['test']} (kept 80 of "
    ) in result.output
    assert counts["kept"] == 80 and counts["duplicates"] == 2  # the sample re-crawls every 50th problem
    assert manifest["source"]["mode"] == "local" and manifest["near_duplicates"]["vector"] == "(default)"
    for name in SPLIT_FILES:
        assert len((in_tmp / "data" / name).read_text().splitlines()) == counts["splits"][name[:-6]]


def test_defaults_work_as_plain_python_calls_like_the_demo(in_tmp):
    mathpal_cli.seed_qdrant(problems=30)
    mathpal_cli.prepare_data()
    manifest = json.loads((in_tmp / "data" / "manifest.json").read_text())
    assert manifest["source"]["qdrant"] == ".mathpal/qdrant" and manifest["counts"]["kept"] == 30
    assert manifest["source"]["filters"] == {"type": ["exam"], "grade_id": []}


def test_system_prompt_file_is_used(in_tmp, sample_store):
    (in_tmp / "prompt.txt").write_text("  Bạn là gia sư.  \n")
    assert invoke("--qdrant-path", str(sample_store), "--system-prompt-file", "prompt.txt").exit_code == 0
    rows = [json.loads(line) for line in (in_tmp / "data" / "train.jsonl").read_text().splitlines()]
    assert {row["messages"][0]["content"] for row in rows} == {"Bạn là gia sư."}


def test_log_artifact_offline_archive_holds_the_four_files(in_tmp, sample_store):
    result = invoke("--qdrant-path", str(sample_store), "--log-artifact")
    assert result.exit_code == 0, result.output
    assert "Comet offline archive reports/prepare-data/comet/" in result.output
    (archive,) = (in_tmp / "reports" / "prepare-data" / "comet").glob("*.zip")
    uploads = {}
    with zipfile.ZipFile(archive) as zf:
        for line in zf.read("messages.json").decode("utf-8").splitlines():
            message = json.loads(line)
            if message["type"] == "file_upload":
                payload = message["payload"]
                uploads[payload["additional_params"]["fileName"]] = (zf.read(payload["file_path"]), payload["metadata"])
    assert sorted(uploads) == sorted([*SPLIT_FILES, "manifest.json", ARTIFACT_METADATA])
    manifest = json.loads((in_tmp / "data" / "manifest.json").read_text())
    artifact_metadata = json.loads(uploads.pop(ARTIFACT_METADATA)[0])
    manifest_sha = hashlib.sha256((in_tmp / "data" / "manifest.json").read_bytes()).hexdigest()
    assert artifact_metadata["manifest_sha256"] == manifest_sha and artifact_metadata["files"] == manifest["files"]
    for name, (data, metadata) in uploads.items():
        assert data == (in_tmp / "data" / name).read_bytes()
        assert metadata["artifact"] == "mathpal-vector_exams" and metadata["artifact_type"] == "dataset"
        if name != "manifest.json":
            assert metadata["sha256"] == manifest["files"][name]


# --------------------------------------------------------------------------- one-line errors, nothing written


def test_unreachable_server_is_one_line_and_fast(in_tmp):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    line = error_line(invoke("--qdrant-url", f"http://127.0.0.1:{port}"))
    assert time.perf_counter() - started < 10
    assert f"Qdrant server http://127.0.0.1:{port} is unreachable" in line
    assert visible(in_tmp) == []


def test_missing_collection_lists_existing(in_tmp, sample_store):
    line = error_line(invoke("--qdrant-path", str(sample_store), "--collection", "exams_v2"))
    assert "collection 'exams_v2' not found" in line and "(existing collections: vector_exams)" in line
    assert visible(in_tmp) == []


def test_locked_store_suggests_a_server(in_tmp, sample_store):
    from dataprep.qdrant_source import open_client

    holder = open_client(sample_store)
    try:
        line = error_line(invoke("--qdrant-path", str(sample_store)))
    finally:
        holder.close()
    assert f"Qdrant store {sample_store} is open in another process" in line and "--qdrant-url" in line
    assert visible(in_tmp) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grade", "grade_9"], "--grade grade_9 matched none of the "),
        (["--type", "theory"], "--type theory matched none of the "),
        (["--near-dup-threshold", "1.2"], "--near-dup-threshold 1.2 must be a cosine in (0, 1]"),
        (["--val-fraction", "0.7", "--test-fraction", "0.4"], "--val-fraction/--test-fraction"),
        (["--system-prompt-file", "missing.txt"], "--system-prompt-file missing.txt does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(in_tmp, sample_store, args, message):
    line = error_line(invoke("--qdrant-path", str(sample_store), *args))
    assert message in line
    assert visible(in_tmp) == []


def test_strict_names_reasons_and_examples(in_tmp):
    seed_store(in_tmp / "q", [_point(eid(1), "Tính 2 + 3.", "Đáp số: 5"), _point(eid(2), "Tính 4 + 4.", "4 + 4 = 8")])
    result = invoke("--qdrant-path", "q", "--strict")
    line = error_line(result)
    assert line == f"error: --strict: 1 of 2 entries rejected: no_final_answer: 1 (e.g. {eid(2)})"
    assert visible(in_tmp) == ["q"]
    assert invoke("--qdrant-path", "q").exit_code == 0  # without --strict the reject is counted


# --------------------------------------------------------------------------- a kill at any moment


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_at_any_moment_leaves_the_previous_export_whole(in_tmp, sample_store):
    """SIGKILL `python -m mathpal_cli prepare-data` while it reads and while it writes: the old export survives,
    no half-written folder is visible, and the worker process does not outlive the killed command."""
    assert invoke("--qdrant-path", str(sample_store), "--out", "data").exit_code == 0
    before = _snapshot(in_tmp / "data")
    # A 200 kB system prompt makes every row big, so the new export writes ~15 MB: time to catch it.
    (in_tmp / "prompt.txt").write_text("Bạn là MathPal. " * 12_500)
    argv = [
        sys.executable,
        "-m",
        "mathpal_cli",
        "prepare-data",
        "--qdrant-path",
        str(sample_store),
        "--out",
        "data",
        "--system-prompt-file",
        "prompt.txt",
    ]
    env = dict(os.environ)
    killed_while_writing = False
    caught = []
    for moment in ("reading", "writing", "writing", "writing"):
        proc = subprocess.Popen(argv, cwd=in_tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker = None
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            worker = (_children(proc.pid) or [worker])[0]
            if moment == "reading" and worker is not None:
                break  # the worker exists: the store is being opened or scrolled
            staging = [p for p in in_tmp.iterdir() if p.name.startswith(".data.") and p.is_dir()]
            if moment == "writing" and staging and any(staging[0].iterdir()):
                break  # the worker has started writing the new splits
        worker = (_children(proc.pid) or [worker])[0]
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not finished:
            caught.append(moment)
            killed_while_writing = moment == "writing"
        if worker is not None:  # the worker notices its parent is gone and exits
            deadline = time.monotonic() + 10
            while _alive(worker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(worker), "the prepare-data worker outlived its killed parent"
        if finished:  # too late to count: the export completed; put the old one back and go on
            shutil.rmtree(in_tmp / "data")
            (in_tmp / "data").mkdir()
            for name, data in before.items():
                (in_tmp / "data" / name).write_bytes(data)
            continue
        assert _snapshot(in_tmp / "data") == before, moment
        assert visible(in_tmp) == ["data", "prompt.txt"]
        if killed_while_writing:
            break
    assert killed_while_writing, "never caught the export while it was writing"
    assert caught[0] == "reading", caught
    assert [p for p in in_tmp.iterdir() if p.name.startswith(".data.")], "the kill left no staging folder to sweep"
    # The next export runs normally over the leftovers of the killed ones, and sweeps them.
    assert subprocess.run(argv, cwd=in_tmp, env=env, capture_output=True).returncode == 0
    after = _snapshot(in_tmp / "data")
    assert after != before and json.loads(after["manifest.json"])["counts"]["kept"] == 80
    assert sorted(p.name for p in in_tmp.iterdir()) == ["data", "prompt.txt"]


def test_seed_qdrant_errors_are_one_line(in_tmp, sample_store):
    from dataprep.qdrant_source import open_client

    holder = open_client(sample_store)
    try:
        result = runner.invoke(
            app, ["seed-qdrant", "--problems", "5", "--qdrant-path", str(sample_store)], terminal_width=400
        )
    finally:
        holder.close()
    assert "is open in another process" in error_line(result)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = runner.invoke(app, ["seed-qdrant", "--qdrant-url", f"localhost:{port}"], terminal_width=400)
    assert f"Qdrant server http://localhost:{port} is unreachable" in error_line(result)
    assert visible(in_tmp) == []


@pytest.mark.slow
def test_the_export_is_readable_as_the_umask_allows(in_tmp, sample_store):
    """A group-readable umask gives a group-readable export (tempfile alone would make it 0700)."""
    script = f"umask 027 && exec {sys.executable} -m mathpal_cli prepare-data --qdrant-path {sample_store} --out data"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=in_tmp, timeout=300)
    assert result.returncode == 0, result.stderr
    assert os.stat(in_tmp / "data").st_mode & 0o777 == 0o750
    assert {os.stat(p).st_mode & 0o777 for p in (in_tmp / "data").iterdir()} == {0o640}
