"""CometML settings shared by every MathPal command that logs an experiment.

One project for training (Axolotl's integration), evaluation and data exports,
and the same quiet experiment options everywhere: Comet's automatic logging
watches the process (stdout, git, hardware), which a report or a dataset does
not need and which costs seconds at exit.
"""

from __future__ import annotations

import os

COMET_PROJECT = "mathpal-gemma3n"

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
