"""Write an evaluation report directory: metrics.json, samples.jsonl and report.md, atomically.

Everything is written into a temporary sibling folder first and renamed into
place, so a reader never sees a report whose files disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atomic_files import staged_dir
from evals.metrics import METRICS


def _metric_table(models: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| model | n | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for name, summary in models.items():
        cells = " | ".join(f"{summary[m]:.3f}" for m in METRICS)
        lines.append(f"| {name} | {summary['n']} | {cells} |")
    return lines


def _breakdown_table(models: dict[str, dict[str, Any]], key: str) -> list[str]:
    values = sorted({v for s in models.values() for v in s.get(f"by_{key}", {})})
    if not values:
        return []
    names = list(models)
    lines = [f"| {key} | n | " + " | ".join(f"{n} accuracy" for n in names) + " |", "|---|---:|" + "---:|" * len(names)]
    for value in values:
        n = next(s[f"by_{key}"][value]["n"] for s in models.values() if value in s.get(f"by_{key}", {}))
        cells = " | ".join(
            f"{models[name].get(f'by_{key}', {}).get(value, {}).get('accuracy', float('nan')):.3f}" for name in names
        )
        lines.append(f"| {value} | {n} | {cells} |")
    return lines


def render_markdown(metrics: dict[str, Any], samples: list[dict[str, Any]], examples: int = 3) -> str:
    """A human-readable summary: the metric table, breakdowns, and a few answers side by side."""
    models = metrics["models"]
    out = [f"# Evaluation `{metrics['run']}`", ""]
    out += [f"- model: `{metrics['model']}`", f"- adapter: `{metrics.get('adapter') or '-'}`"]
    out += [f"- data: `{metrics['data']}` ({metrics['n']} problems)", ""]
    out += ["## Metrics", "", *_metric_table(models), ""]
    if "comparison" in metrics:
        out += ["## Fine-tuned minus base", ""]
        out += [f"- {name}: {value:+.3f}" for name, value in metrics["comparison"].items()] + [""]
    for key in ("grade_id", "topic"):
        table = _breakdown_table(models, key)
        if table:
            out += [f"## Accuracy by {key}", "", *table, ""]
    out += ["## Sample answers", ""]
    for sample in samples[: examples * len(models)]:
        mark = "correct" if sample["correct"] else "wrong"
        out += [
            f"### {sample['model']} · {sample['id']} · {mark}",
            "",
            f"**Question.** {sample['question']}",
            "",
            f"**Gold answer.** {sample['answer']} · **extracted.** {sample['extracted_answer']}",
            "",
            "```text",
            sample["prediction"][:1200],
            "```",
            "",
        ]
    return "\n".join(out)


def write_report(
    report_dir: Path,
    metrics: dict[str, Any],
    samples: list[dict[str, Any]],
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write the three report files (and whatever ``extra`` adds) into ``report_dir`` atomically."""
    with staged_dir(Path(report_dir)) as staging:
        (staging / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
        with (staging / "samples.jsonl").open("w", encoding="utf-8") as fh:
            for sample in samples:
                fh.write(json.dumps(sample, ensure_ascii=False) + "\n")
        (staging / "report.md").write_text(render_markdown(metrics, samples), encoding="utf-8")
        if extra:
            extra(staging)
    return Path(report_dir)
