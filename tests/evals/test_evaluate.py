"""The path both commands share: predictions → grades → metrics → report (no model needed).

`mathpal eval --baseline` on the tiny model, end to end, is in tests/test_cli_eval.py.
"""

from __future__ import annotations

import json

import pytest

from evals import evaluate
from evals.evaluate import pair_rows, read_examples, read_predictions, report_predictions, run_score
from mathpal_common.comet import flatten_metrics, read_offline_metrics

REFERENCE = (
    "Số học sinh nữ là:\n40 × 3 : 5 = 24 (học sinh)\nSố học sinh nam là:\n40 - 24 = 16 (học sinh)\nĐáp số: 16 học sinh"
)


def prediction(model: str, index: int, correct: bool, topic: str) -> dict:
    answer = "16 học sinh" if correct else "15 học sinh"
    return {
        "model": model,
        "id": f"p{index}",
        "question": f"Bài {index}: lớp có 40 học sinh …",
        "answer": "16 học sinh",
        "reference": REFERENCE,
        "topic": topic,
        "grade_id": "grade_5",
        "prediction": f"Số học sinh nữ là:\n40 × 3 : 5 = 24 (học sinh)\nĐáp số: {answer}",
    }


@pytest.fixture()
def paired_file(tmp_path):
    """10 problems: tuned solves 8, base 3 (base's 3 are among tuned's 8)."""
    rows = [prediction("base", i, i < 3, "fractions" if i % 2 else "ratios") for i in range(10)]
    rows += [prediction("tuned", i, i < 8, "fractions" if i % 2 else "ratios") for i in reversed(range(10))]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_score_report_has_every_file_and_they_agree(paired_file, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    report_dir, metrics = run_score(paired_file, tmp_path / "report")
    assert sorted(p.name for p in report_dir.iterdir()) == [
        "accuracy_by_topic.png",
        "comet",
        "metrics.json",
        "report.md",
        "samples.jsonl",
    ]
    assert json.loads((report_dir / "metrics.json").read_text()) == metrics
    assert (report_dir / "accuracy_by_topic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["models"]["base"]["accuracy"] == pytest.approx(0.3)
    assert metrics["models"]["tuned"]["accuracy"] == pytest.approx(0.8)
    ratios = metrics["models"]["tuned"]["by_topic"]["ratios"]
    # problems 0, 2, 4, 6 right, 8 wrong; a wrong answer still shows 1 of the 2 reference results (24)
    assert (ratios["n"], ratios["accuracy"], ratios["completeness"], ratios["clarity"]) == (5, 0.8, 0.9, 1.0)
    assert 0.3 < ratios["relevance"] < 1.0
    accuracy = metrics["comparison"]["accuracy"]
    assert accuracy["difference"] == pytest.approx(0.5)
    assert accuracy["mcnemar"] == {"tuned_only_correct": 5, "base_only_correct": 0, "p_value": 0.0625}
    assert accuracy["ci_low"] > 0 and accuracy["significant"] is False  # 10 problems are too few to be sure
    samples = [json.loads(line) for line in (report_dir / "samples.jsonl").read_text().splitlines()]
    assert all(isinstance(s["correct"], bool) for s in samples)
    assert {"prediction", "extracted_answer", "correct", "accuracy", "relevance", "completeness", "clarity"} <= set(
        samples[0]
    )
    report = (report_dir / "report.md").read_text()
    assert "The tuned model solves 50.0 points more problems than the base model (8 vs 3 of 10 problems" in report
    assert "McNemar exact p = 0.0625" in report and "this could be noise" in report
    assert "| accuracy | 0.300 | 0.800 | +50.0 |" in report and "![Accuracy by topic](accuracy_by_topic.png)" in report
    (archive,) = (report_dir / "comet").glob("*.zip")
    expected = flatten_metrics(metrics)
    logged = read_offline_metrics(archive)
    assert {k: logged[k] for k in expected} == expected
    assert f"CometML offline archive: {report_dir / 'comet' / archive.name}" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]  # no staging left


def test_regrading_a_report_reproduces_its_metrics(paired_file, tmp_path):
    first_dir, first = run_score(paired_file, tmp_path / "first", comet=False)
    second_dir, second = run_score(first_dir / "samples.jsonl", tmp_path / "second", comet=False)
    assert second["models"] == first["models"] and second["comparison"] == first["comparison"]
    assert (second_dir / "samples.jsonl").read_text() == (first_dir / "samples.jsonl").read_text()


def test_a_comet_failure_keeps_the_report(paired_file, tmp_path, monkeypatch):
    """Comet is a side channel: if logging breaks, the report is still written whole."""
    warnings: list[str] = []

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(evaluate, "log_to_comet", broken)
    report_dir, _ = report_predictions(
        read_predictions(paired_file),
        {"command": "score", "data": "x"},
        tmp_path / "report",
        comet=True,
        warn=warnings.append,
    )
    assert sorted(p.name for p in report_dir.iterdir()) == [
        "accuracy_by_topic.png",
        "metrics.json",
        "report.md",
        "samples.jsonl",
    ]
    assert warnings == ["CometML logging failed (RuntimeError: disk full); the report is written without it"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "answer": "1", "prediction": "1"}', "not json"], r"p.jsonl:2 is not JSON"),
        (['["q", "1"]'], r"p.jsonl:1 is not a JSON object"),
        (['{"question": "q", "answer": "1"}'], r"p.jsonl:1 has no 'prediction': each line needs question, answer"),
        (['{"question": "q", "prediction": "1"}'], r"p.jsonl:1 has no 'answer'"),
        (['{"question": "q", "answer": null, "prediction": "1"}'], r"p.jsonl:1 has a null 'answer'"),
        (['{"question": "q", "answer": "1", "prediction": ["1"]}'], r"p.jsonl:1 has a list 'prediction'"),
        (['{"question": "q", "answer": " ", "prediction": "1"}'], r"p.jsonl:1 has an empty 'answer'"),
        (['{"question": "q", "answer": "1", "prediction": "1", "hit_limit": "yes"}'], r"non-boolean 'hit_limit'"),
        (["", "  "], r"p.jsonl has no predictions"),
    ],
)
def test_bad_prediction_files_are_one_line_errors(tmp_path, lines, message):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_predictions(path)


def test_prediction_defaults_and_lenient_types(tmp_path):
    path = tmp_path / "gpt.jsonl"
    path.write_text('{"question": "q", "answer": 72, "prediction": null, "id": 7}\n', encoding="utf-8")
    (row,) = read_predictions(path)
    assert row["answer"] == "72" and row["prediction"] == "" and row["id"] == "7"
    assert row["model"] == "gpt" and row["hit_limit"] is False and row["reference"] is None


def test_pairing_needs_the_same_problems():
    base = [{"id": "a", "question": "A"}, {"id": None, "question": "B"}, {"id": None, "question": "B"}]
    tuned = [{"id": None, "question": "B", "n": 1}, {"id": "a", "question": "A"}, {"id": None, "question": "B", "n": 2}]
    paired_base, paired_tuned = pair_rows(base, tuned)
    assert [r["question"] for r in paired_tuned] == ["A", "B", "B"] and paired_tuned[1]["n"] == 1
    with pytest.raises(ValueError, match=r"answer different problems \(2 unmatched\)"):
        pair_rows(base, [{"id": "a", "question": "A"}, {"id": "c", "question": "C"}, {"id": None, "question": "B"}])


def test_read_examples_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "x"}], "answer": "1"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 is not JSON"):
        read_examples(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="has no examples"):
        read_examples(empty)
