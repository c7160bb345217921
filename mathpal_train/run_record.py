"""The run record ``mathpal_run.json``: what a training run's folder says about the run, read and written.

``mathpal train`` writes it before the job starts (``mathpal_train.train_job``), ``RunStatePlugin``
marks it finished as the job's last act (``mathpal_train.run_state``), and ``mathpal train``
records how the job ended. Everything after training reads it through ``RunRecord``: one typed
view, so that no reader spells a key of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathpal_common.atomic_files import write_text_atomic

RUN_RECORD = "mathpal_run.json"


def read_record(folder: Path) -> dict[str, Any]:
    """The run record in ``folder`` ({} when there is none, or it is not a JSON object)."""
    try:
        record = json.loads((Path(folder) / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(folder: Path, record: dict[str, Any]) -> Path:
    return write_text_atomic(Path(folder) / RUN_RECORD, json.dumps(record, ensure_ascii=False, indent=2) + "\n")


@dataclass(frozen=True)
class CometLink:
    """The Comet experiment a run logged to: the model artifact and later evaluations join it."""

    experiment_key: str
    project: str | None = None
    online: bool = False


@dataclass(frozen=True)
class RunRecord:
    """What the record says, typed. ``RunRecord.read`` of a folder without a record is an empty one
    (a run launched by hand, or an adapter saved by other means)."""

    status: str | None = None
    finished: bool = False
    base_model: str | None = None
    system_prompt: str | None = None
    manifest_sha256: str | None = None
    comet: CometLink | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RunRecord:
        comet = record.get("comet") if isinstance(record.get("comet"), dict) else None
        dataset = record.get("dataset") if isinstance(record.get("dataset"), dict) else {}
        return cls(
            status=record.get("status"),
            finished=record.get("finished") is True,
            base_model=record.get("base_model") or None,
            system_prompt=record.get("system_prompt") or None,
            manifest_sha256=dataset.get("manifest_sha256"),
            comet=(
                CometLink(comet["experiment_key"], comet.get("project"), bool(comet.get("online")))
                if comet and comet.get("experiment_key")
                else None
            ),
            raw=record,
        )

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        return cls.from_dict(read_record(folder))

    @property
    def experiment_key(self) -> str | None:
        return self.comet.experiment_key if self.comet else None
