"""An evaluation logged with the real comet_ml: the offline archive and the fallback.

No network: "servers" are sockets on 127.0.0.1 that this test opens (or a port it closed).
"""

from __future__ import annotations

import csv
import io
import time

from evals.chart import write_accuracy_chart
from evals.comet_log import TABLE_COLUMNS, log_to_comet
from mathpal_common.comet import flatten_metrics, read_offline_assets, read_offline_metrics
from tests.mathpal_common.test_comet import closed_port

METRICS = {
    "n": 2,
    "models": {
        "base": {"n": 2, "accuracy": 0.0, "relevance": None, "by_topic": {"money": {"n": 1, "accuracy": 0.0}}},
        "tuned": {"n": 2, "accuracy": 0.5, "relevance": 0.25, "by_topic": {"money": {"n": 1, "accuracy": 1.0}}},
    },
    "comparison": {"accuracy": {"difference": 0.5, "ci_low": 0.0, "ci_high": 1.0, "significant": False}},
}
SAMPLES = [
    {
        "model": "base",
        "id": "a",
        "question": "Hỏi?",
        "answer": "12,5 kg",
        "prediction": "Đáp số: 12 kg,\nhết",
        "correct": False,
        "accuracy": 0.0,
        "relevance": None,
    },
    {
        "model": "tuned",
        "id": "a",
        "question": "Hỏi?",
        "answer": "12,5 kg",
        "prediction": "Đáp số: 12,5 kg",
        "correct": True,
        "accuracy": 1.0,
        "relevance": 0.25,
    },
]


def test_offline_archive_carries_metrics_table_chart_and_files(tmp_path, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    chart = write_accuracy_chart(METRICS, tmp_path / "accuracy_by_topic.png")
    report = tmp_path / "report.md"
    report.write_text("# Evaluation\n", encoding="utf-8")
    result = log_to_comet(
        "unit-test", METRICS, {"model": "m"}, tmp_path / "comet", samples=SAMPLES, assets=[report], chart=chart
    )
    assert result.mode == "offline" and result.fallback is None
    assert result.archive is not None and result.archive.parent == tmp_path / "comet"
    expected = flatten_metrics(METRICS)
    logged = read_offline_metrics(result.archive)
    assert {k: logged[k] for k in expected} == expected
    files = read_offline_assets(result.archive)
    assert files["accuracy_by_topic.png"] == ("visualization", chart.read_bytes())
    assert files["report.md"] == ("asset", report.read_bytes())
    table = list(csv.reader(io.StringIO(files["samples.csv"][1].decode("utf-8"))))
    assert table[0] == list(TABLE_COLUMNS)
    assert [row[TABLE_COLUMNS.index("prediction")] for row in table[1:]] == [s["prediction"] for s in SAMPLES]
    assert [row[TABLE_COLUMNS.index("relevance")] for row in table[1:]] == ["", "0.25"]


def test_key_with_unreachable_server_falls_back_to_an_offline_archive(tmp_path, monkeypatch):
    """comet_ml alone would wait ~30 s here and then drop everything; we probe and go offline."""
    url = f"http://127.0.0.1:{closed_port()}/clientlib/"
    monkeypatch.setenv("COMET_API_KEY", "not-a-real-key")
    monkeypatch.setenv("COMET_URL_OVERRIDE", url)
    started = time.perf_counter()
    result = log_to_comet("unreachable", METRICS, {"model": "m"}, tmp_path / "comet", samples=SAMPLES)
    assert time.perf_counter() - started < 10
    assert result.mode == "offline" and result.archive is not None and result.archive.is_file()
    assert result.fallback == f"server {url} unreachable within 10 s (ConnectionError)"
    logged = read_offline_metrics(result.archive)
    assert logged["models/tuned/accuracy"] == 0.5
    assert sorted(read_offline_assets(result.archive)) == ["samples.csv"]
