"""``mathpal eval`` of a trained run: the run's one loader decides what evals evaluates.

``evals`` knows nothing of training runs (it is a stage beside training): given ``--adapter RUN``,
this is where the run's base model (unless ``--model`` overrides it), adapter, tokenizer and
Comet experiment are looked up, once, with the same check ask and merge use
(``mathpal_train.trained_run.load_trained``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from evals.evaluate import EvalSettings
from mathpal_train.tiny_model import DEFAULT_TINY_MODEL_DIR
from mathpal_train.trained_run import load_trained


def eval_settings(
    settings: EvalSettings,
    model: str | None = None,
    allow_unfinished: bool = False,
    allow_other_base: bool = False,
) -> EvalSettings:
    """``settings`` with the model, tokenizer and experiment of its adapter's run filled in.

    Without an adapter the model is ``model``, else the tiny demo model. A one-line ``ValueError``
    names what is wrong with the adapter.
    """
    if settings.adapter is None:
        return replace(settings, model=model or str(DEFAULT_TINY_MODEL_DIR))
    try:
        trained = load_trained(Path(settings.adapter), model, allow_unfinished, allow_other_base)
    except ValueError as err:
        raise ValueError(f"--adapter {err}") from None
    return replace(
        settings,
        model=trained.base_model,
        adapter=str(trained.adapter),
        tokenizer=trained.tokenizer,
        experiment_key=trained.experiment_key,
    )
