"""Log an export to CometML as a dataset artifact (``prepare-data --log-artifact``).

With ``COMET_API_KEY`` set, the three JSONL files and the manifest become a
versioned Comet ``Artifact`` of type ``dataset``, named after the collection.
Without a key the run is recorded in an offline archive (``comet upload FILE.zip``
sends it later).  comet_ml cannot log an artifact offline (``OfflineExperiment.
log_artifact`` raises NotImplementedError, comet_ml 3.58), so the archive carries
the same four files as assets tagged with the artifact's name, type and sha256,
plus the counts as metrics; rerun with a key to create the artifact itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mathpal_train.comet import COMET_PROJECT, QUIET_EXPERIMENT, quiet_comet_console

DEFAULT_OFFLINE_DIR = Path("reports/prepare-data/comet")
ARTIFACT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json")

def artifact_name(collection: str) -> str:
    """``mathpal-<collection>``, with characters Comet does not allow in names replaced by ``-``."""
    return "mathpal-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", collection).strip("-")


def artifact_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the artifact records besides its files: source, counts and file hashes."""
    return {"source": manifest["source"], "counts": manifest["counts"], "files": manifest["files"]}


def _flat_counts(counts: dict[str, Any], prefix: str = "counts/") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in counts.items():
        if isinstance(value, dict):
            flat.update(_flat_counts(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def log_dataset_artifact(
    folder: Path, manifest: dict[str, Any], offline_dir: Path = DEFAULT_OFFLINE_DIR, project: str = COMET_PROJECT
) -> str:
    """Log the export in ``folder``; returns a line saying where it went (artifact or archive)."""
    quiet_comet_console()
    import comet_ml

    name = artifact_name(manifest["source"]["collection"])
    metadata = artifact_metadata(manifest)
    online = bool(os.environ.get("COMET_API_KEY"))
    if online:
        experiment = comet_ml.Experiment(project_name=project, **QUIET_EXPERIMENT)
    else:
        offline_dir.mkdir(parents=True, exist_ok=True)
        experiment = comet_ml.OfflineExperiment(project_name=project, offline_directory=str(offline_dir), **QUIET_EXPERIMENT)
    experiment.set_name(f"prepare-data {manifest['source']['collection']}")
    experiment.log_parameters({"collection": manifest["source"]["collection"], **manifest.get("settings", {})})
    experiment.log_metrics(_flat_counts(manifest["counts"]))
    if online:
        artifact = comet_ml.Artifact(name, artifact_type="dataset", metadata=metadata)
        for file_name in ARTIFACT_FILES:
            artifact.add(str(Path(folder) / file_name), logical_path=file_name)
        logged = experiment.log_artifact(artifact)
        experiment.end()
        return f"Comet artifact {name} (dataset) version {getattr(logged, 'version', '?')} logged"
    import hashlib

    manifest_sha = hashlib.sha256((Path(folder) / "manifest.json").read_bytes()).hexdigest()
    sha = {**manifest["files"], "manifest.json": manifest_sha}
    for file_name in ARTIFACT_FILES:
        experiment.log_asset(
            str(Path(folder) / file_name),
            file_name=file_name,
            metadata={"artifact": name, "artifact_type": "dataset", "sha256": sha.get(file_name, "")},
        )
    experiment.log_other("artifact", name)
    experiment.log_other("artifact_type", "dataset")
    key = experiment.get_key()
    experiment.end()
    where = offline_dir / f"{key}.zip"
    return (f"Comet offline archive {where} (dataset {name}: its 4 files as assets, since comet_ml cannot log "
            "an artifact offline; upload with `comet upload`, or set COMET_API_KEY to log the artifact itself)")
