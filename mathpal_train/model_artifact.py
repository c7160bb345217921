"""The trained adapter as a Comet model artifact, logged into its own training run's experiment.

``mathpal train`` calls it after a successful run whose recipe has ``use_comet: true``
(``mathpal_train.train_job.run_training``); a run launched with a plain ``accelerate
launch`` has no recorded experiment key and logs no artifact. The artifact is named
``mathpal-adapter-<output_dir name>`` and carries the adapter, the tokenizer with its chat
template, the resolved recipe and the run record; its metadata holds the resolved recipe,
the base model and the sha256 of the data export's ``manifest.json``, which the dataset
artifact of ``prepare-data --log-artifact`` records too: the two artifacts are linked by it.

Online (``COMET_API_KEY`` and a server that answers) it is a real ``Artifact`` version;
offline it goes into ``<output_dir>/comet/`` as an archive that adds to the training
experiment (``ExistingOfflineExperiment``), holding the same files as tagged assets:
upload the training archive first, then this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathpal_common.comet import COMET_PROJECT, CometRun, artifact_name, log_artifact, log_session
from mathpal_train.recipes import RESOLVED_RECIPE_NAME
from mathpal_train.run_record import RUN_RECORD
from mathpal_train.trained_run import TrainedRun, dataset_manifest

# What a user of the adapter needs, as Axolotl and `mathpal train` leave it in output_dir.
ARTIFACT_FILES = (
    "adapter_model.safetensors",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    RESOLVED_RECIPE_NAME,
    RUN_RECORD,
)


def model_artifact_name(output_dir: Path) -> str:
    return artifact_name(f"adapter-{Path(output_dir).name}")


def model_artifact_metadata(run: TrainedRun) -> dict[str, Any]:
    """The recipe it ran, its base model, and the data export it trained on (by the manifest's sha256)."""
    sha = run.info.manifest_sha256
    collection = None
    manifest = dataset_manifest(run.recipe)
    if manifest is not None:
        import json

        sha = sha or manifest[1]
        collection = (json.loads(manifest[0].read_text(encoding="utf-8")).get("source") or {}).get("collection")
    return {
        "base_model": run.base_model,
        "recipe": run.recipe,
        "dataset_manifest_sha256": sha,
        "dataset_artifact": artifact_name(collection) if collection else None,
        "experiment_key": run.experiment_key,
    }


def log_model_artifact(run: TrainedRun, offline_dir: Path | None = None) -> str:
    """Log the run's adapter into its experiment; returns one line saying where it went."""
    offline_dir = Path(offline_dir or run.output_dir / "comet")
    comet = run.info.comet
    project = (comet.project if comet else None) or COMET_PROJECT
    name = model_artifact_name(run.output_dir)
    files = {f: run.output_dir / f for f in ARTIFACT_FILES if (run.output_dir / f).is_file()}
    metadata = model_artifact_metadata(run)

    def log(session: CometRun) -> str:
        session.experiment.log_parameters({"dataset_manifest_sha256": metadata["dataset_manifest_sha256"] or ""})
        return log_artifact(session, name, "model", files, metadata)

    logged = log_session(offline_dir, project, log, existing_key=run.experiment_key)
    if logged.online:
        return f"{logged.where} (experiment {run.experiment_key})"
    return logged.line("upload it after the training archive with `comet upload`")
