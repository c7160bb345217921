"""Log an evaluation to CometML: its metrics, parameters, samples table, chart and report files.

Where it goes (online with ``COMET_API_KEY`` and a reachable server, else an offline archive
that ``comet upload <zip>`` sends later) is ``mathpal_common.comet``'s decision, shared with
training and data exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mathpal_common.comet import COMET_PROBE_TIMEOUT_S, COMET_PROJECT, flatten_metrics, log_session

SAMPLES_TABLE = "samples.csv"
# Columns of the samples table, in order (prediction last: it is the long one).
TABLE_COLUMNS = (
    "model",
    "id",
    "grade_id",
    "topic",
    "question",
    "answer",
    "extracted_answer",
    "correct",
    "accuracy",
    "relevance",
    "completeness",
    "clarity",
    "prediction",
)


class CometResult(NamedTuple):
    """Where the log went: ``mode`` is "online" (``url`` set) or "offline" (``archive`` set);
    ``fallback`` is why a run with a key went offline instead ("server URL unreachable (…)"),
    None when nothing went wrong."""

    mode: str
    archive: Path | None = None
    url: str | None = None
    fallback: str | None = None


def samples_table(samples: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """One row per sample in ``TABLE_COLUMNS`` order; None becomes "" so the CSV has no 'None'."""
    return [["" if s.get(c) is None else s.get(c) for c in TABLE_COLUMNS] for s in samples]


def _log_everything(
    experiment,
    run_name: str,
    metrics: dict[str, Any],
    params: dict[str, Any],
    samples: Sequence[dict[str, Any]],
    assets: Sequence[Path],
    chart: Path | None,
    into_training_run: bool = False,
) -> None:
    """What every evaluation logs: name, parameters, flattened metrics, the samples table,
    the chart and the report files.

    Into a training run's experiment the name stays the run's and the parameters are
    prefixed ``eval_`` (the trainer's own parameters keep theirs)."""
    if into_training_run:
        experiment.log_other("eval_run", run_name)
        experiment.log_parameters(params, prefix="eval")
    else:
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
    experiment_key: str | None = None,
) -> CometResult:
    """Log metrics, parameters, the samples table, the chart and ``assets``.

    Online when ``COMET_API_KEY`` is set and the server answers; otherwise into an offline
    archive in ``offline_dir`` (created only then). With ``experiment_key`` (a training run's,
    from its run record) everything is added to that experiment.
    """
    logged = log_session(
        offline_dir,
        project,
        lambda run: _log_everything(
            run.experiment, run_name, metrics, params, samples, assets, chart, bool(experiment_key)
        ),
        existing_key=experiment_key,
        probe_timeout=probe_timeout,
    )
    if logged.online:
        return CometResult("online", url=logged.where)
    return CometResult("offline", archive=logged.archive, fallback=logged.fallback)
