"""`mathpal demo` for real, short: quiet by default, its outputs readable as the umask allows.

Slow: the whole pipeline, with a few training steps.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow
# What libraries print when nothing keeps them quiet (torchao's CPU build, torch's pytree, Axolotl's
# config dump and logs, progress bars, comet_ml's console).
NOISE = ("Failed to load", "_pytree", '"activation_offloading"', "[INFO]", "it/s]", "COMET ", "Loading weights")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    argv = [sys.executable, "-m", "mathpal_cli", "demo", "--recipe", str(REPO / "recipes" / "smoke.yml")]
    argv += ["--max-steps", "5", "--eval-limit", "2", "--max-new-tokens", "8"]
    script = f"umask 027 && exec {' '.join(argv)}"
    result = subprocess.run(["sh", "-c", script], cwd=work, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, result


def test_the_demo_keeps_library_noise_off_the_terminal(demo):
    work, result = demo
    shown = result.stdout + result.stderr
    assert result.stderr == "" and not [marker for marker in NOISE if marker in shown], shown
    assert len(shown.splitlines()) < 70, shown
    log = (work / "outputs" / "smoke" / "logs" / "training.log").read_text(errors="replace")
    assert '"activation_offloading"' in log  # the job's whole output is in the run's log


def test_the_comet_upload_hint_names_the_archive_where_it_is(demo):
    work, result = demo
    (archive,) = re.findall(r"CometML offline archive: (\S+\.zip) \(upload with `comet upload`\)", result.stdout)
    assert (work / archive).is_file() and archive.startswith("reports/demo/comet/")


def test_the_outputs_are_readable_as_the_umask_allows(demo):
    work, _ = demo
    for folder in ("data", ".mathpal/tiny-gemma3n", "outputs/smoke", "reports/demo"):
        assert os.stat(work / folder).st_mode & 0o777 == 0o750, folder
    files = [p for folder in ("data", "outputs/smoke") for p in (work / folder).iterdir() if p.is_file()]
    assert {os.stat(p).st_mode & 0o777 for p in files} == {0o640}, files
