"""Tests for dataprep.export: cleaning/dedup/split of a collection, JSONL bytes, atomic export."""

from __future__ import annotations

import hashlib
import json
import random
import unicodedata

import pytest

from dataprep.payloads import normalise_question
from dataprep.splits import SPLITS
from mathpal_common.prompt import DEFAULT_SYSTEM_PROMPT
from tests.dataprep.conftest import LONG_QUESTION, LONG_SOLUTION, assign_split, build_splits, eid, jsonl_bytes

EXAM_FILTERS = {"types": {"exam"}, "grades": {"grade_5", "grade_6"}}


def all_rows(result):
    return [row for name in SPLITS for row in result.splits[name]]


def split_of(result):
    return {row["id"]: name for name in SPLITS for row in result.splits[name]}


def export_bytes(result):
    return {name: jsonl_bytes(result.splits[name]) for name in SPLITS}


@pytest.fixture
def many_points(make_point):
    """Forty distinct small problems (enough for every split to get some at 0.3/0.3)."""
    return [
        make_point(
            eid(1000 + i),
            f"Tính {i} + {2 * i + 1} bằng bao nhiêu?",
            f"{i} + {2 * i + 1} = {3 * i + 1}\nĐáp số: {3 * i + 1}",
        )
        for i in range(40)
    ]


# --------------------------------------------------------------------------- build_splits: counts


def test_counts_with_type_and_grade_filters(corpus):
    result = build_splits(corpus["points"], **EXAM_FILTERS)
    counts = result.counts
    assert counts["points_read"] == len(corpus["points"])
    assert counts["filtered_out"] == 2
    assert counts["entries"] == 7
    assert counts["kept"] == 3
    assert counts["duplicates"] == 2
    assert counts["rejected"] == {"no_final_answer": 1, "no_solution": 1}
    assert sum(counts["splits"].values()) == 3
    assert counts["splits"] == {name: len(result.splits[name]) for name in SPLITS}
    assert sorted(r.reason for r in result.rejected_examples) == ["no_final_answer", "no_solution"]
    assert {r.entry_id for r in result.rejected_examples} == {corpus["ids"]["no_answer"], corpus["ids"]["no_solution"]}


def test_filtered_entries_are_not_exported(corpus):
    result = build_splits(corpus["points"], **EXAM_FILTERS)
    entry_ids = {row["entry_id"] for row in all_rows(result)}
    assert corpus["ids"]["theory"] not in entry_ids
    assert corpus["ids"]["grade_4"] not in entry_ids
    assert {row["grade_id"] for row in all_rows(result)} == {"grade_5", "grade_6"}


def test_no_filters_keep_every_type_and_grade(corpus):
    result = build_splits(corpus["points"])
    assert result.counts["filtered_out"] == 0
    assert result.counts["kept"] == 5
    entry_ids = {row["entry_id"] for row in all_rows(result)}
    assert {corpus["ids"]["theory"], corpus["ids"]["grade_4"]} <= entry_ids


def test_grade_filter_alone(corpus):
    result = build_splits(corpus["points"], grades={"grade_6"})
    assert [row["entry_id"] for row in all_rows(result)] == [corpus["ids"]["grade6"]]
    assert result.counts["filtered_out"] == len(corpus["points"]) - 1


# --------------------------------------------------------------------------- build_splits: rows


def test_rows_are_chat_examples(corpus):
    result = build_splits(corpus["points"], **EXAM_FILTERS, system_prompt="SYS")
    rows = {row["entry_id"]: row for row in all_rows(result)}
    plain = rows[corpus["ids"]["plain"]]
    assert plain["answer"] == "60 cm²"
    assert plain["grade_id"] == "grade_5"
    assert plain["topic"] == "hình học"
    assert plain["id"] == hashlib.sha256(normalise_question(corpus["plain_question"]).encode()).hexdigest()[:16]
    assert plain["messages"] == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": corpus["plain_question"]},
        {"role": "assistant", "content": corpus["plain_solution"]},
    ]
    grade6 = rows[corpus["ids"]["grade6"]]
    assert "topic" not in grade6
    assert grade6["answer"] == "x = 27"
    assert grade6["messages"][2]["content"] == "x = 42 - 15\nx = 27\nĐáp số: x = 27."


def test_default_system_prompt_is_used(corpus):
    result = build_splits(corpus["points"], **EXAM_FILTERS)
    assert {row["messages"][0]["content"] for row in all_rows(result)} == {DEFAULT_SYSTEM_PROMPT}


def test_chunked_entry_is_exported_whole(corpus):
    result = build_splits(corpus["points"], **EXAM_FILTERS)
    (row,) = [r for r in all_rows(result) if r["entry_id"] == corpus["ids"]["chunked"]]
    assert row["messages"][1]["content"] == LONG_QUESTION
    assert row["messages"][2]["content"] == LONG_SOLUTION
    assert row["answer"] == "105 kg"


def test_duplicates_kept_once_lowest_entry_id_wins(corpus):
    result = build_splits(corpus["points"], **EXAM_FILTERS)
    keys = [normalise_question(row["messages"][1]["content"]) for row in all_rows(result)]
    assert len(keys) == len(set(keys))
    entry_ids = {row["entry_id"] for row in all_rows(result)}
    assert corpus["ids"]["plain"] in entry_ids
    assert corpus["ids"]["dup_nfd"] not in entry_ids and corpus["ids"]["dup_html"] not in entry_ids


def test_exported_text_is_nfc(corpus):
    result = build_splits(corpus["points"], **EXAM_FILTERS)
    for row in all_rows(result):
        for message in row["messages"]:
            assert unicodedata.is_normalized("NFC", message["content"])


def test_rows_sorted_by_id_within_each_split(many_points):
    result = build_splits(many_points, val_fraction=0.3, test_fraction=0.3)
    for name in SPLITS:
        ids = [row["id"] for row in result.splits[name]]
        assert ids == sorted(ids)
        assert len(ids) > 0


def test_split_follows_hash_of_normalised_question(many_points):
    result = build_splits(many_points, val_fraction=0.3, test_fraction=0.3)
    for name in SPLITS:
        for row in result.splits[name]:
            assert assign_split(normalise_question(row["messages"][1]["content"]), 0.3, 0.3) == name


def test_duplicate_rows_would_share_split(make_point, many_points):
    # Whichever copy of a duplicate is kept, its split is that of the shared question.
    dup = make_point(eid(1), unicodedata.normalize("NFD", "TÍNH 7 + 15 BẰNG BAO NHIÊU?"), "Đáp số: 22")
    with_dup = build_splits([*many_points, dup], val_fraction=0.3, test_fraction=0.3)
    without = build_splits(many_points, val_fraction=0.3, test_fraction=0.3)
    assert with_dup.counts["duplicates"] == 1
    assert split_of(with_dup) == split_of(without)
    (row,) = [
        r
        for r in all_rows(with_dup)
        if r["id"] == hashlib.sha256("tính 7 + 15 bằng bao nhiêu?".encode()).hexdigest()[:16]
    ]
    assert row["entry_id"] == eid(1)  # the smaller entry id wins, whatever the order


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_scroll_order_does_not_change_the_bytes(corpus, seed):
    reference = export_bytes(build_splits(corpus["points"], **EXAM_FILTERS))
    shuffled = list(corpus["points"])
    random.Random(seed).shuffle(shuffled)
    assert export_bytes(build_splits(shuffled, **EXAM_FILTERS)) == reference


def test_reexport_is_byte_identical(many_points, corpus):
    points = [*many_points, *corpus["points"]]
    first = build_splits(points, val_fraction=0.3, test_fraction=0.3)
    second = build_splits(points, val_fraction=0.3, test_fraction=0.3)
    assert export_bytes(first) == export_bytes(second)
    assert first.counts == second.counts


def test_adding_problems_never_moves_existing_ones(make_point, many_points):
    before = split_of(build_splits(many_points, val_fraction=0.3, test_fraction=0.3))
    extra = [
        make_point(
            eid(5000 + i),
            f"Một lớp có {20 + i} học sinh, chia thành {i % 4 + 2} tổ. Hỏi mỗi tổ có mấy bạn?",
            f"Đáp số: {(20 + i) // (i % 4 + 2)} bạn",
        )
        for i in range(60)
    ]
    mixed = [*extra[:30], *many_points, *extra[30:]]
    after = split_of(build_splits(mixed, val_fraction=0.3, test_fraction=0.3))
    assert len(after) == len(before) + 60
    assert {k: after[k] for k in before} == before


def test_malformed_points_are_counted_not_raised(make_point):
    points = [
        make_point(eid(1), content=None) | {"content": 42},
        make_point(eid(2), content=None) | {"content": None},
        {k: v for k, v in make_point(eid(3), "q", "Đáp số: 1").items() if k != "content"},
        make_point(eid(4), content=""),
        make_point(eid(5), content="#### SOLUTION:\nĐáp số: 1"),
        make_point(eid(6), "Tính 1 + 1.", ""),
        make_point(eid(7), "Tính 1 + 1.", "1 + 1 = 2"),
        make_point(eid(8), "Tính 1 + 1.", "Đáp số: 2", chunk_id="garbled"),
        make_point(eid(9), "Tính 1 + 2.", "Đáp số: 3"),
    ]
    result = build_splits(points)
    assert result.counts["rejected"] == {
        "bad_chunk_id": 1,
        "content_not_string": 3,
        "empty_content": 1,
        "no_final_answer": 1,
        "no_question": 1,
        "no_solution": 1,
    }
    assert result.counts["kept"] == 1
    assert [row["entry_id"] for row in all_rows(result)] == [eid(9)]


# --------------------------------------------------------------------------- jsonl_bytes


def test_jsonl_bytes_one_utf8_line_per_row():
    rows = [{"id": "a", "answer": "60 cm²", "messages": [{"role": "user", "content": "Tính\n2 + 3"}]}, {"id": "b"}]
    data = jsonl_bytes(rows)
    assert data.endswith(b"\n")
    lines = data.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert "60 cm²" in lines[0]  # not \u-escaped
    assert jsonl_bytes([]) == b""


def test_jsonl_bytes_equal_data_gives_equal_bytes():
    # The docstring promises "a fixed key order, so equal data gives equal bytes".
    a = {"id": "x1", "answer": "5", "messages": [{"role": "user", "content": "Tính 2 + 3."}]}
    b = {"messages": [{"content": "Tính 2 + 3.", "role": "user"}], "answer": "5", "id": "x1"}
    assert a == b
    assert jsonl_bytes([a]) == jsonl_bytes([b])


# --------------------------------------------------------------------------- split files
# Writing the folder (atomic swap, manifest, sha256) is tested on run_export in test_pipeline.py.


def test_input_order_does_not_change_the_split_files(corpus):
    shuffled = list(corpus["points"])
    random.Random(7).shuffle(shuffled)
    a = build_splits(corpus["points"], **EXAM_FILTERS)
    b = build_splits(shuffled, **EXAM_FILTERS)
    assert a.counts == b.counts
    for name in SPLITS:
        assert jsonl_bytes(a.splits[name]) == jsonl_bytes(b.splits[name])
        assert len(jsonl_bytes(a.splits[name]).splitlines()) == a.counts["splits"][name]
