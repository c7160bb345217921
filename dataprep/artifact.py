"""Log an export to CometML as a dataset artifact (``prepare-data --log-artifact``).

With ``COMET_API_KEY`` set, the three JSONL files and the manifest become a
versioned Comet ``Artifact`` of type ``dataset``, named after the collection.
Without a key the run is recorded in an offline archive (``comet upload FILE.zip``
sends it later).  comet_ml cannot log an artifact offline, so the archive carries
the same four files as assets tagged with the artifact's name, type and sha256
(``mathpal_common.comet.log_artifact``), plus the counts as metrics; rerun with a key
to create the artifact itself.  The manifest's own sha256 is in the metadata: a model
artifact names the export it trained on by it.  Online or
offline is ``mathpal_common.comet``'s decision (a key whose server does not answer goes
offline too, and the line says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathpal_common.atomic_files import file_sha256
from mathpal_common.comet import COMET_PROJECT, CometRun, artifact_name, flatten_metrics, log_artifact, log_session

DEFAULT_OFFLINE_DIR = Path("reports/prepare-data/comet")
ARTIFACT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json")


def artifact_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the artifact records besides its files: source, counts and file hashes."""
    return {"source": manifest["source"], "counts": manifest["counts"], "files": manifest["files"]}


def log_dataset_artifact(
    folder: Path, manifest: dict[str, Any], offline_dir: Path = DEFAULT_OFFLINE_DIR, project: str = COMET_PROJECT
) -> str:
    """Log the export in ``folder``; returns a line saying where it went (artifact or archive)."""
    name = artifact_name(manifest["source"]["collection"])
    metadata = {**artifact_metadata(manifest), "manifest_sha256": file_sha256(Path(folder) / "manifest.json")}
    files = {file_name: Path(folder) / file_name for file_name in ARTIFACT_FILES}

    def log(run: CometRun) -> str:
        experiment = run.experiment
        experiment.set_name(f"prepare-data {manifest['source']['collection']}")
        experiment.log_parameters({"collection": manifest["source"]["collection"], **manifest.get("settings", {})})
        experiment.log_metrics(flatten_metrics(manifest["counts"], "counts/"))
        return log_artifact(run, name, "dataset", files, metadata)

    logged = log_session(offline_dir, project, log)
    return logged.line("upload with `comet upload`, or set COMET_API_KEY to log the artifact itself")
