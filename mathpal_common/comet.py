"""CometML for every MathPal command: online with ``COMET_API_KEY``, else an offline archive.

One decision for training (Axolotl's Comet callback), evaluation and data exports:

* with a key, the server is probed first (``probe_server``, 10 s at most): comet_ml itself
  waits about 30 s for an unreachable server and then silently drops everything logged;
* without a key, when the probe fails, or when the server refuses the experiment, the same
  things go into an offline archive (a zip that ``comet upload FILE.zip`` sends later), and
  the caller says why in one line (``CometRun.fallback``).

Every experiment uses the same project and the same quiet options: Comet's automatic
logging watches the process (stdout, git, hardware), which a report or a dataset does not
need and which costs seconds at exit. ``read_offline_metrics`` and ``read_offline_assets``
read an archive back (the tests check what would be uploaded).
"""

from __future__ import annotations

import json
import os
import re
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urljoin

COMET_PROJECT = "mathpal-gemma3n"
COMET_PROBE_TIMEOUT_S = 10.0
# The asset that carries an artifact's metadata in an offline archive (``log_artifact``).
ARTIFACT_METADATA = "artifact_metadata.json"

QUIET_EXPERIMENT = dict(
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


def quiet_comet_console() -> None:
    """Comet's console messages name staging folders and nag about import order; our
    commands print the outcome themselves. Call before importing comet_ml."""
    os.environ.setdefault("COMET_LOGGING_CONSOLE", "error")
    os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")


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


class CometRun(NamedTuple):
    """A started experiment and where it logs: ``online`` or into ``offline_dir``.

    ``fallback`` says why a run with a key went offline instead ("server … unreachable
    within 10 s (ConnectionError)"); None when nothing went wrong.
    """

    experiment: Any
    online: bool
    offline_dir: Path
    fallback: str | None = None


def start_experiment(
    offline_dir: Path,
    project: str = COMET_PROJECT,
    probe_timeout: float = COMET_PROBE_TIMEOUT_S,
    existing_key: str | None = None,
) -> CometRun:
    """An ``Experiment`` when a key is set and the server answers, else an ``OfflineExperiment``
    writing into ``offline_dir`` (created only then).

    With ``existing_key`` the run adds to that experiment (a training run's, so that its model
    artifact and evaluation sit beside its loss curve): ``ExistingExperiment`` online,
    ``ExistingOfflineExperiment`` offline, whose archive is uploaded after the experiment's own.
    """
    quiet_comet_console()
    import comet_ml

    fallback = None
    if os.environ.get("COMET_API_KEY"):
        url = comet_server_url()
        why = probe_server(url, probe_timeout)
        if why is None:
            if existing_key:
                experiment = comet_ml.ExistingExperiment(experiment_key=existing_key, **QUIET_EXPERIMENT)
            else:
                experiment = comet_ml.Experiment(project_name=project, **QUIET_EXPERIMENT)
            if experiment.alive:
                return CometRun(experiment, True, Path(offline_dir))
            experiment.end()
            fallback = f"server {url} refused the experiment (see Comet's message above)"
        else:
            fallback = f"server {url} unreachable within {probe_timeout:g} s ({why})"
    Path(offline_dir).mkdir(parents=True, exist_ok=True)
    offline = comet_ml.ExistingOfflineExperiment if existing_key else comet_ml.OfflineExperiment
    experiment = offline(
        project_name=project,
        offline_directory=str(offline_dir),
        **({"experiment_key": existing_key} if existing_key else {}),
        **QUIET_EXPERIMENT,
    )
    return CometRun(experiment, False, Path(offline_dir), fallback)


def new_experiment_key() -> str:
    """A fresh experiment key (32 hex characters, what comet_ml accepts), chosen before the
    training job starts so that later commands can add to its experiment."""
    import uuid

    return uuid.uuid4().hex


def artifact_name(stem: str) -> str:
    """``mathpal-<stem>`` (a collection, ``adapter-<run>``), with characters Comet does not allow in
    names replaced by ``-``: the dataset and the model artifact are named by this one rule."""
    return "mathpal-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-")


def log_artifact(run: CometRun, name: str, artifact_type: str, files: dict[str, Path], metadata: dict) -> str:
    """Log ``files`` (logical name → path) as a Comet artifact; returns where it went, as one line.

    comet_ml cannot log an artifact offline (``OfflineExperiment.log_artifact`` raises
    NotImplementedError, comet_ml 3.58), so offline the same files become assets tagged with
    the artifact's name, type and sha256, and the metadata the asset ``ARTIFACT_METADATA``
    (not a ``log_other``: Comet cuts those at 1,000 characters); rerun online to create the
    artifact itself.
    """
    import hashlib

    if run.online:
        import comet_ml

        artifact = comet_ml.Artifact(name, artifact_type=artifact_type, metadata=metadata)
        for logical, path in files.items():
            artifact.add(str(path), logical_path=logical)
        logged = run.experiment.log_artifact(artifact)
        return f"Comet artifact {name} ({artifact_type}) version {getattr(logged, 'version', '?')} logged"
    for logical, path in files.items():
        sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        tags = {"artifact": name, "artifact_type": artifact_type, "sha256": sha}
        run.experiment.log_asset(str(path), file_name=logical, metadata=tags)
    text = json.dumps(metadata, ensure_ascii=False, sort_keys=True, indent=2)
    run.experiment.log_asset_data(text, name=ARTIFACT_METADATA, metadata={"artifact": name})
    run.experiment.log_other("artifact", name)
    run.experiment.log_other("artifact_type", artifact_type)
    return f"{artifact_type} {name}: its {len(files)} files as assets, since comet_ml cannot log an artifact offline"


def end_experiment(run: CometRun) -> Path | None:
    """End the experiment; for an offline run, return the archive it wrote (``<key>.zip``).

    comet_ml reports a failed archive write (a full disk) only in its log, so the archive is
    read back here: a missing or unreadable one is a ``WriteError``, never a silent success.
    """
    from mathpal_common.atomic_files import WriteError

    key = run.experiment.get_key()
    run.experiment.end()
    if run.online:
        return None
    # ``<key>.zip`` for a new experiment; an existing one's archive adds a random suffix, and the
    # folder may hold the experiment's earlier archives too: the newest is this run's.
    archives = sorted(run.offline_dir.glob(f"{key}*.zip"), key=lambda p: p.stat().st_mtime)
    if not archives:
        raise WriteError(f"comet_ml wrote no offline archive {key}.zip (is the disk full?)")
    try:
        _archive_messages(archives[-1])
    except (OSError, ValueError, zipfile.BadZipFile, KeyError):
        raise WriteError(f"the Comet offline archive {archives[-1].name} is incomplete (is the disk full?)") from None
    return archives[-1]


class Logged(NamedTuple):
    """Where one Comet session's log went: online (``where``: what the logging said, or the
    experiment's URL), or into the offline ``archive`` (``fallback``: why a run with a key
    went offline, None when nothing went wrong)."""

    online: bool
    where: str | None
    archive: Path | None
    fallback: str | None = None

    def line(self, offline_hint: str) -> str:
        """One line for the user: where it went, and for an archive what to do with it."""
        if self.online:
            return self.where or "CometML"
        why = f"CometML {self.fallback}; " if self.fallback else ""
        detail = f"{self.where}; {offline_hint}" if self.where else offline_hint
        return f"{why}Comet offline archive {self.archive} ({detail})"


def log_session(
    offline_dir: Path,
    project: str,
    log: Callable[[CometRun], str | None],
    existing_key: str | None = None,
    probe_timeout: float = COMET_PROBE_TIMEOUT_S,
) -> Logged:
    """One Comet session, the sequence every logger here follows: start the experiment (online or
    offline, ``start_experiment``), ``log`` into it, end it (the archive read back,
    ``end_experiment``), and say where it went. ``log`` returns a line about what it logged (an
    artifact's place), or None."""
    run = start_experiment(offline_dir, project, probe_timeout, existing_key=existing_key)
    where = log(run)
    url = run.experiment.url if run.online else None
    archive = end_experiment(run)
    return Logged(run.online, where or url, archive, run.fallback)


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


def job_env(
    env: dict[str, str], output_dir: Path, probe_timeout: float = COMET_PROBE_TIMEOUT_S
) -> tuple[dict[str, str], str | None]:
    """Comet settings for a training job (Axolotl's callback), and why it went offline if a key was set.

    Offline into ``output_dir/comet`` when there is no API key, or when the key's server does
    not answer the probe: comet_ml would retry for ~30 s at start, print "Your experiment
    will not be logged" and drop the run's metrics. An archive is uploaded later with
    ``comet upload``. A ``COMET_START_ONLINE`` the user set is theirs to keep.
    """
    offline = {"COMET_START_ONLINE": "0", "COMET_OFFLINE_DIRECTORY": str(Path(output_dir) / "comet")}
    if "COMET_START_ONLINE" in env:
        return {}, None
    if not env.get("COMET_API_KEY"):
        return offline, None
    url = comet_server_url()  # the job inherits this process's Comet configuration
    why = probe_server(url, probe_timeout)
    if why is None:
        return {}, None
    return offline, f"server {url} unreachable within {probe_timeout:g} s ({why})"


# --------------------------------------------------------------------------- reading an archive back


def _archive_messages(archive: Path) -> list[dict[str, Any]]:
    with zipfile.ZipFile(archive) as zf:
        return [json.loads(line) for line in zf.read("messages.json").decode("utf-8").splitlines() if line.strip()]


def read_offline_metrics(archive: Path) -> dict[str, float]:
    """The metrics an offline archive will upload (last value per name)."""
    found: dict[str, float] = {}
    for message in _archive_messages(archive):
        if message.get("type") == "metric_msg":
            metric = message["payload"]["metric"]
            found[metric["metricName"]] = metric["metricValue"]
    return found


def read_offline_key(archive: Path) -> str:
    """The key of the experiment an offline archive adds to (its ``experiment.json``)."""
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("experiment.json"))["offline_id"]


def read_offline_others(archive: Path) -> dict[str, str]:
    """The ``log_other`` values an offline archive will upload (last value per name)."""
    found: dict[str, str] = {}
    for message in _archive_messages(archive):
        if message.get("type") == "log_other":
            found[message["payload"]["key"]] = message["payload"]["value"]
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
