"""The report's chart: accuracy per topic, one bar per model (base vs tuned), as a PNG.

Drawn with matplotlib's object API on an Agg canvas, never through pyplot: no GUI backend
is ever chosen (servers and CI have no display), no global figure state leaks between
reports, and drawing works from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHART_FILE = "accuracy_by_topic.png"

# Base grey, tuned blue, then matplotlib's palette for any other model names (``mathpal score``).
_COLOURS = {"base": "#9e9e9e", "tuned": "#1f77b4"}
_OTHER_COLOURS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def chart_rows(metrics: dict[str, Any]) -> list[tuple[str, int, dict[str, float | None]]]:
    """(label, n, {model: accuracy}) per topic, sorted by name, then "all" for the whole split.

    A model without a problem of some topic gets None there (no bar, not a zero bar).
    """
    models = metrics["models"]
    topics = sorted({topic for summary in models.values() for topic in summary.get("by_topic", {})})
    rows = []
    for topic in topics:
        n = max(summary.get("by_topic", {}).get(topic, {}).get("n", 0) for summary in models.values())
        accuracies = {
            name: summary.get("by_topic", {}).get(topic, {}).get("accuracy") for name, summary in models.items()
        }
        rows.append((topic, n, accuracies))
    rows.append(("all", max(s["n"] for s in models.values()), {name: s["accuracy"] for name, s in models.items()}))
    return rows


def write_accuracy_chart(metrics: dict[str, Any], path: Path) -> Path:
    """Grouped horizontal bars of accuracy (%) per topic and overall; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = chart_rows(metrics)
    names = list(metrics["models"])
    bar = 0.8 / len(names)
    figure = Figure(figsize=(8, 1.2 + 0.45 * len(rows) * max(1, len(names) / 2)), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    others = iter(_OTHER_COLOURS * 4)
    for index, name in enumerate(names):
        colour = _COLOURS.get(name) or next(others)
        positions = [row_index + (index - (len(names) - 1) / 2) * bar for row_index in range(len(rows))]
        values = [row[2].get(name) for row in rows]
        shown = [(p, 100 * v) for p, v in zip(positions, values) if v is not None]
        if not shown:
            continue
        bars = axes.barh([p for p, _ in shown], [v for _, v in shown], height=bar * 0.9, color=colour, label=name)
        axes.bar_label(bars, labels=[f"{v:.0f}%" for _, v in shown], padding=2, fontsize=8)
    axes.set_yticks(range(len(rows)), [f"{label} (n={n})" for label, n, _ in rows])
    axes.invert_yaxis()  # topics top-down in alphabetical order, "all" last
    axes.set_xlim(0, 112)
    axes.set_xlabel("accuracy (%)")
    axes.set_title("Accuracy by topic" + (" — base vs tuned" if {"base", "tuned"} <= set(names) else ""))
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path
