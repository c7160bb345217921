"""Log an evaluation to CometML: online with ``COMET_API_KEY``, else an offline archive.

The offline archive is a zip that ``comet upload <zip>`` sends later, so a run on a machine
without network or key still ends up in the team's project.

With a key set, the server is probed first (10 s at most): comet_ml itself would wait about
30 s for an unreachable server and then silently drop everything logged.  When the probe
fails, or the server refuses the experiment, the same things are logged offline instead and
the caller says so in one line.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urljoin

from mathpal_train.comet import COMET_PROJECT, QUIET_EXPERIMENT, quiet_comet_console

COMET_PROBE_TIMEOUT_S = 10.0
SAMPLES_TABLE = "samples.csv"
# Columns of the samples table, in order (prediction last: it is the long one).
TABLE_COLUMNS = (
    "model", "id", "grade_id", "topic", "question", "answer", "extracted_answer", "correct",
    "accuracy", "relevance", "completeness", "clarity", "prediction",
)

class CometResult(NamedTuple):
    """Where the log went: ``mode`` is "online" (``url`` set) or "offline" (``archive`` set);
    ``fallback`` is why a run with a key went offline instead ("server URL unreachable (…)"),
    None when nothing went wrong."""

    mode: str
    archive: Path | None = None
    url: str | None = None
    fallback: str | None = None


def flatten_metrics(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a/b/c`` names (booleans, strings and None skipped)."""
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def samples_table(samples: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """One row per sample in ``TABLE_COLUMNS`` order; None becomes "" so the CSV has no 'None'."""
    return [["" if s.get(c) is None else s.get(c) for c in TABLE_COLUMNS] for s in samples]


def comet_server_url() -> str:
    """The server address comet_ml will use: its config (``COMET_URL_OVERRIDE``, ~/.comet.config),
    or the address an API key carries, or comet.com."""
    quiet_comet_console()
    from comet_ml.config import get_api_key, get_backend_address, get_config

    config = get_config()
    get_api_key(None, config)  # applies the address a key may carry, exactly as Experiment does
    return get_backend_address(config)


def probe_server(url: str, timeout: float = COMET_PROBE_TIMEOUT_S) -> str | None:
    """None when the Comet server at ``url`` answers its health ping within ``timeout`` seconds,
    else why not: "no answer", the error's name ("ConnectionError") or "HTTP 503".

    The request runs in a daemon thread joined with the deadline, because a socket timeout
    does not bound DNS resolution or a trickling proxy; a hung probe is simply abandoned.
    """
    outcome: dict[str, Any] = {}

    def ping() -> None:
        try:
            import requests

            outcome["status"] = requests.get(urljoin(url, "health/ping"), timeout=timeout).status_code
        except Exception as error:  # any failure to get an answer means unreachable
            outcome["error"] = type(error).__name__

    thread = threading.Thread(target=ping, name="comet-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "no answer"
    if "error" in outcome:
        return outcome["error"]
    if outcome["status"] >= 500:
        return f"HTTP {outcome['status']}"
    return None


def _log_everything(
    experiment,
    run_name: str,
    metrics: dict[str, Any],
    params: dict[str, Any],
    samples: Sequence[dict[str, Any]],
    assets: Sequence[Path],
    chart: Path | None,
) -> None:
    """What every evaluation logs: name, parameters, flattened metrics, the samples table,
    the chart and the report files."""
    experiment.set_name(run_name)
    experiment.log_parameters(params)
    experiment.log_metrics(flatten_metrics(metrics))
    if samples:
        experiment.log_table(SAMPLES_TABLE, tabular_data=samples_table(samples), headers=list(TABLE_COLUMNS))
    if chart is not None:
        experiment.log_image(str(chart), name=Path(chart).stem)
    for asset in assets:
        experiment.log_asset(str(asset), file_name=Path(asset).name)


def log_to_comet(
    run_name: str,
    metrics: dict[str, Any],
    params: dict[str, Any],
    offline_dir: Path,
    samples: Sequence[dict[str, Any]] = (),
    assets: Sequence[Path] = (),
    chart: Path | None = None,
    project: str = COMET_PROJECT,
    probe_timeout: float = COMET_PROBE_TIMEOUT_S,
) -> CometResult:
    """Log metrics, parameters, the samples table, the chart and ``assets``.

    Online when ``COMET_API_KEY`` is set and the server answers; otherwise into an offline
    archive in ``offline_dir`` (created only then).
    """
    quiet_comet_console()
    import comet_ml

    fallback = None
    if os.environ.get("COMET_API_KEY"):
        url = comet_server_url()
        fallback = probe_server(url, probe_timeout)
        if fallback is None:
            experiment = comet_ml.Experiment(project_name=project, **QUIET_EXPERIMENT)
            if experiment.alive:
                _log_everything(experiment, run_name, metrics, params, samples, assets, chart)
                experiment.end()
                return CometResult("online", url=experiment.url)
            experiment.end()
            fallback = f"server {url} refused the experiment (see Comet's message above)"
        else:
            fallback = f"server {url} unreachable within {probe_timeout:g} s ({fallback})"
    offline_dir.mkdir(parents=True, exist_ok=True)
    experiment = comet_ml.OfflineExperiment(project_name=project, offline_directory=str(offline_dir), **QUIET_EXPERIMENT)
    _log_everything(experiment, run_name, metrics, params, samples, assets, chart)
    experiment.end()
    archives = sorted(offline_dir.glob("*.zip"), key=lambda p: p.stat().st_mtime)
    return CometResult("offline", archive=archives[-1] if archives else None, fallback=fallback)


def _archive_messages(archive: Path) -> list[dict[str, Any]]:
    with zipfile.ZipFile(archive) as zf:
        return [json.loads(line) for line in zf.read("messages.json").decode("utf-8").splitlines() if line.strip()]


def read_offline_metrics(archive: Path) -> dict[str, float]:
    """The metrics an offline archive will upload (last value per name): how tests check it."""
    found: dict[str, float] = {}
    for message in _archive_messages(archive):
        if message.get("type") == "metric_msg":
            metric = message["payload"]["metric"]
            found[metric["metricName"]] = metric["metricValue"]
    return found


def read_offline_assets(archive: Path) -> dict[str, tuple[str, bytes]]:
    """Name → (upload type, content) of every file an offline archive will upload.

    Assets and tables keep their file name ("samples.csv", upload type "asset"); images are
    named after ``log_image``'s name plus extension ("accuracy_by_topic.png", "visualization").
    """
    found: dict[str, tuple[str, bytes]] = {}
    with zipfile.ZipFile(archive) as zf:
        for message in _archive_messages(archive):
            if message.get("type") != "file_upload":
                continue
            payload = message["payload"]
            extra = payload.get("additional_params", {})
            name = extra.get("fileName") or f"{extra.get('figName')}.{extra.get('extension')}"
            found[name] = (payload.get("upload_type", ""), zf.read(payload["file_path"]))
    return found
