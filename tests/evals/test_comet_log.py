"""The CometML offline archive: written without a key, and its metrics equal ours."""

from __future__ import annotations

import json

from evals.comet_log import flatten_metrics, log_to_comet, read_offline_metrics


def test_flatten_keeps_numbers_only():
    tree = {"n": 3, "models": {"base": {"accuracy": 0.5, "flag": True, "name": "x"}}, "model": "path"}
    assert flatten_metrics(tree) == {"n": 3, "models/base/accuracy": 0.5}


def test_offline_archive_carries_the_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    metrics = {"n": 2, "models": {"base": {"accuracy": 0.0}, "tuned": {"accuracy": 0.5, "by_topic": {"money": {"n": 1}}}}}
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"id": "a", "correct": True}) + "\n")
    archive = log_to_comet("unit-test", metrics, {"model": "m"}, samples, tmp_path / "comet")
    assert archive is not None and archive.suffix == ".zip" and archive.parent == tmp_path / "comet"
    logged = read_offline_metrics(archive)
    expected = flatten_metrics(metrics)
    assert {k: logged[k] for k in expected} == expected
