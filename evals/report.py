"""Write an evaluation report directory, atomically: metrics.json, samples.jsonl, report.md and
the accuracy chart (plus whatever the caller adds, such as the CometML archive).

Everything is written into a temporary sibling folder first and renamed into place, so a
reader never sees a report whose files disagree.  ``mathpal eval`` and ``mathpal score`` both
end here, so their reports have the same files and layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.chart import CHART_FILE, write_accuracy_chart
from evals.metrics import METRICS
from mathpal_common.atomic_files import staged_dir

REPORT_FILES = ("metrics.json", "samples.jsonl", "report.md", CHART_FILE)


def _cell(value: float | None, fmt: str = "{:.3f}") -> str:
    """A table cell; a metric nobody could compute (no reference solution) shows as '–'."""
    return "–" if value is None else fmt.format(value)


def _points(value: float | None) -> str:
    """A difference of shares as signed percentage points: 0.12 → '+12.0'."""
    return "–" if value is None else f"{100 * value:+.1f}"


def _metric_table(models: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| model | n | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for name, summary in models.items():
        cells = " | ".join(_cell(summary[m]) for m in METRICS)
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
        cells = " | ".join(_cell(models[name].get(f"by_{key}", {}).get(value, {}).get("accuracy")) for name in names)
        lines.append(f"| {value} | {n} | {cells} |")
    return lines


def verdict(metrics: dict[str, Any]) -> str | None:
    """One sentence a teacher can act on: how many points more (or fewer) problems the tuned
    model solves, with the interval and p-value, and whether that is beyond noise."""
    comparison = metrics.get("comparison")
    if not comparison:
        return None
    accuracy = comparison["accuracy"]
    models = metrics["models"]
    difference, test = accuracy["difference"], accuracy["mcnemar"]
    n = comparison["n_pairs"]
    solved = {name: round(models[name]["accuracy"] * models[name]["n"]) for name in ("base", "tuned")}
    evidence = (
        f"{solved['tuned']} vs {solved['base']} of {n} problems; "
        f"{comparison['bootstrap']['confidence']:.0%} CI {_points(accuracy['ci_low'])} to "
        f"{_points(accuracy['ci_high'])} points; McNemar exact p = {test['p_value']:.3g}"
    )
    if difference == 0:
        return f"The tuned and the base model solve the same share of problems ({evidence})."
    direction = "more" if difference > 0 else "fewer"
    claim = f"The tuned model solves {abs(100 * difference):.1f} points {direction} problems than the base model"
    if accuracy["significant"]:
        return f"{claim} ({evidence}): unlikely to be noise."
    return f"{claim} ({evidence}): this could be noise (it needs the interval to exclude 0 and p < 0.05)."


def _comparison_table(metrics: dict[str, Any]) -> list[str]:
    comparison = metrics["comparison"]
    models = metrics["models"]
    level = f"{comparison['bootstrap']['confidence']:.0%}"
    lines = [
        f"| metric | base | tuned | tuned − base (points) | {level} CI (points) | McNemar exact p |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for metric in METRICS:
        row = comparison[metric]
        p_value = f"{row['mcnemar']['p_value']:.3g}" if "mcnemar" in row else ""
        interval = "–" if row["ci_low"] is None else f"{_points(row['ci_low'])} to {_points(row['ci_high'])}"
        lines.append(
            f"| {metric} | {_cell(models['base'][metric])} | {_cell(models['tuned'][metric])} | "
            f"{_points(row['difference'])} | {interval} | {p_value} |"
        )
    test = comparison["accuracy"]["mcnemar"]
    boot = comparison["bootstrap"]
    lines += [
        "",
        f"Paired over {comparison['n_pairs']} problems: {test['tuned_only_correct']} solved only by tuned, "
        f"{test['base_only_correct']} only by base. Intervals: paired bootstrap, {boot['resamples']:,} resamples "
        f"of the problems, seed {boot['seed']}, percentile method. Formulas: docs/metrics.md.",
    ]
    return lines


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``: a model's answer may contain
    a fence of its own, which would otherwise end the block early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _first_problems(samples: list[dict[str, Any]], count: int) -> list[list[dict[str, Any]]]:
    """The samples of the first ``count`` problems, grouped per problem so that the models'
    answers to one question stand side by side."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        key = sample.get("id") or sample["question"]
        if key in groups or len(groups) < count:
            groups.setdefault(key, []).append(sample)
    return list(groups.values())


def render_markdown(metrics: dict[str, Any], samples: list[dict[str, Any]], examples: int = 3) -> str:
    """A human-readable summary: the verdict, metric tables, breakdowns, the chart, and a few
    answers side by side."""
    models = metrics["models"]
    out = [f"# Evaluation `{metrics['run']}`", ""]
    if metrics.get("command") == "score":
        out += [f"- predictions: `{metrics['data']}` (graded by `mathpal score`)"]
    else:
        out += [f"- model: `{metrics['model']}`", f"- adapter: `{metrics.get('adapter') or '-'}`"]
        out += [f"- data: `{metrics['data']}`"]
    out += [f"- problems: {metrics['n']}", ""]
    sentence = verdict(metrics)
    if sentence:
        out += [f"**{sentence}**", ""]
    out += ["## Metrics", "", *_metric_table(models), ""]
    if "comparison" in metrics:
        out += ["## Fine-tuned minus base", "", *_comparison_table(metrics), ""]
    out += ["## Accuracy by topic", "", f"![Accuracy by topic]({CHART_FILE})", ""]
    for key in ("grade_id", "topic"):
        table = _breakdown_table(models, key)
        if table:
            out += [f"### Accuracy by {key}", "", *table, ""]
    out += ["## Sample answers", ""]
    for problem in _first_problems(samples, examples):
        first = problem[0]
        out += [
            f"### {first.get('id') or first['question'][:60]}",
            "",
            f"**Question.** {first['question']}",
            "",
            f"**Gold answer.** {first['answer']}",
            "",
        ]
        for sample in problem:
            mark = "correct" if sample["correct"] else "wrong"
            fence = _fence(sample["prediction"][:1200])
            out += [
                f"**{sample['model']}** ({mark}; extracted: {sample['extracted_answer']})",
                "",
                f"{fence}text",
                sample["prediction"][:1200],
                fence,
                "",
            ]
    return "\n".join(out)


def console_summary(metrics: dict[str, Any]):
    """The rich table both commands print: one row per metric, one column per model, then the
    tuned-minus-base difference and its interval; problems/s last after ``eval``."""
    from rich.table import Table

    models = metrics["models"]
    comparison = metrics.get("comparison")
    speeds = (metrics.get("generation") or {}).get("problems_per_s", {})
    table = Table(title=f"{metrics.get('command', 'eval')} {metrics['run']} ({metrics['n']} problems)")
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    if comparison:
        level = f"{comparison['bootstrap']['confidence']:.0%}"
        table.add_column("tuned − base (points)", justify="right")
        table.add_column(f"{level} CI (points)", justify="right")
        table.add_column("McNemar p", justify="right")
    for metric in METRICS:
        cells = [_cell(models[name][metric]) for name in models]
        if comparison:
            row = comparison[metric]
            interval = "–" if row["ci_low"] is None else f"{_points(row['ci_low'])} to {_points(row['ci_high'])}"
            p_value = f"{row['mcnemar']['p_value']:.3g}" if "mcnemar" in row else ""
            cells += [_points(row["difference"]), interval, p_value]
        table.add_row(metric, *cells)
    if speeds:
        table.add_row(
            "problems/s", *(f"{speeds.get(name, 0):.2f}" for name in models), *([""] * 3 if comparison else [])
        )
    return table


def write_report(
    report_dir: Path,
    metrics: dict[str, Any],
    samples: list[dict[str, Any]],
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write the report files (and whatever ``extra`` adds) into ``report_dir`` atomically."""
    with staged_dir(Path(report_dir)) as staging:
        (staging / "metrics.json").write_text(
            json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        with (staging / "samples.jsonl").open("w", encoding="utf-8") as fh:
            for sample in samples:
                fh.write(json.dumps(sample, ensure_ascii=False) + "\n")
        (staging / "report.md").write_text(render_markdown(metrics, samples), encoding="utf-8")
        write_accuracy_chart(metrics, staging / CHART_FILE)
        if extra:
            extra(staging)
    return Path(report_dir)


def summary_items(path: Path, metrics: dict[str, Any]) -> list[Any]:
    """What ``eval`` and ``score`` print at the end: the metric table, the base-vs-tuned verdict
    (when there is one) and where the report is."""
    sentence = verdict(metrics)
    return [console_summary(metrics), *([sentence] if sentence else []), f"report: {path}"]
