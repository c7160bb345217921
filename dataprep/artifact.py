"""Log an export to CometML as a dataset artifact (``prepare-data --log-artifact``).

With ``COMET_API_KEY`` set, the three JSONL files and the manifest become a
versioned Comet ``Artifact`` of type ``dataset``, named after the collection.
Without a key the run is recorded in an offline archive (``comet upload FILE.zip``
sends it later).  comet_ml cannot log an artifact offline (``OfflineExperiment.
log_artifact`` raises NotImplementedError, comet_ml 3.58), so the archive carries
the same four files as assets tagged with the artifact's name, type and sha256,
plus the counts as metrics; rerun with a key to create the artifact itself.  Online or
offline is ``mathpal_train.comet``'s decision (a key whose server does not answer goes
offline too, and the line says why).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from mathpal_train.comet import COMET_PROJECT, end_experiment, flatten_metrics, start_experiment

DEFAULT_OFFLINE_DIR = Path("reports/prepare-data/comet")
ARTIFACT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json")


def artifact_name(collection: str) -> str:
    """``mathpal-<collection>``, with characters Comet does not allow in names replaced by ``-``."""
    return "mathpal-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", collection).strip("-")


def artifact_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the artifact records besides its files: source, counts and file hashes."""
    return {"source": manifest["source"], "counts": manifest["counts"], "files": manifest["files"]}


def log_dataset_artifact(
    folder: Path, manifest: dict[str, Any], offline_dir: Path = DEFAULT_OFFLINE_DIR, project: str = COMET_PROJECT
) -> str:
    """Log the export in ``folder``; returns a line saying where it went (artifact or archive)."""
    import comet_ml

    name = artifact_name(manifest["source"]["collection"])
    run = start_experiment(offline_dir, project)
    experiment = run.experiment
    experiment.set_name(f"prepare-data {manifest['source']['collection']}")
    experiment.log_parameters({"collection": manifest["source"]["collection"], **manifest.get("settings", {})})
    experiment.log_metrics(flatten_metrics(manifest["counts"], "counts/"))
    if run.online:
        artifact = comet_ml.Artifact(name, artifact_type="dataset", metadata=artifact_metadata(manifest))
        for file_name in ARTIFACT_FILES:
            artifact.add(str(Path(folder) / file_name), logical_path=file_name)
        logged = experiment.log_artifact(artifact)
        end_experiment(run)
        return f"Comet artifact {name} (dataset) version {getattr(logged, 'version', '?')} logged"
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
    archive = end_experiment(run)
    why = f"CometML {run.fallback}; " if run.fallback else ""
    return (
        f"{why}Comet offline archive {archive} (dataset {name}: its 4 files as assets, since comet_ml cannot log "
        "an artifact offline; upload with `comet upload`, or set COMET_API_KEY to log the artifact itself)"
    )
