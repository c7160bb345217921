"""Log an evaluation to CometML: online with ``COMET_API_KEY``, else an offline archive.

The offline archive is a zip that ``comet upload <zip>`` sends later, so a run on
a machine without network or key still ends up in the team's project.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

COMET_PROJECT = "mathpal-gemma3n"

# Comet's automatic logging watches the process (stdout, git, hardware); an eval
# report needs none of it, and it costs seconds at exit.
_QUIET = dict(
    auto_metric_logging=False,
    auto_param_logging=False,
    auto_output_logging=False,
    log_code=False,
    log_graph=False,
    log_git_metadata=False,
    log_git_patch=False,
    log_env_details=False,
    log_env_gpu=False,
    log_env_host=False,
    log_env_cpu=False,
    display_summary_level=0,
)


def flatten_metrics(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a/b/c`` names (booleans and strings skipped)."""
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def log_to_comet(
    run_name: str,
    metrics: dict[str, Any],
    params: dict[str, Any],
    samples_file: Path,
    offline_dir: Path,
    project: str = COMET_PROJECT,
) -> Path | None:
    """Log metrics, parameters and the samples table; returns the offline archive (None online)."""
    # Comet's own console messages name the staging folder and nag about import order;
    # we print the archive's final path ourselves.
    os.environ.setdefault("COMET_LOGGING_CONSOLE", "error")
    os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
    import comet_ml

    online = bool(os.environ.get("COMET_API_KEY"))
    if online:
        experiment = comet_ml.Experiment(project_name=project, **_QUIET)
    else:
        offline_dir.mkdir(parents=True, exist_ok=True)
        experiment = comet_ml.OfflineExperiment(project_name=project, offline_directory=str(offline_dir), **_QUIET)
    experiment.set_name(run_name)
    experiment.log_parameters(params)
    experiment.log_metrics(flatten_metrics(metrics))
    experiment.log_asset(str(samples_file), file_name=samples_file.name)
    experiment.end()
    if online:
        return None
    archives = sorted(offline_dir.glob("*.zip"))
    return archives[-1] if archives else None


def read_offline_metrics(archive: Path) -> dict[str, float]:
    """The metrics an offline archive will upload (last value per name): how tests check it."""
    found: dict[str, float] = {}
    with zipfile.ZipFile(archive) as zf:
        for line in zf.read("messages.json").decode("utf-8").splitlines():
            message = json.loads(line)
            if message.get("type") == "metric_msg":
                metric = message["payload"]["metric"]
                found[metric["metricName"]] = metric["metricValue"]
    return found
