"""Tests for dataprep.splits: salted-hash buckets and train/validation/test assignment."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest

from dataprep.payloads import normalise_question
from dataprep.splits import SPLIT_SALT, SPLITS, split_bucket
from tests.dataprep.conftest import assign_split

KEYS = [f"tính {a} + {b} = ?" for a in range(60) for b in range(50)]  # 3000 distinct keys


def test_split_bucket_in_unit_interval_and_deterministic():
    buckets = [split_bucket(k) for k in KEYS[:500]]
    assert all(0.0 <= b < 1.0 for b in buckets)
    assert buckets == [split_bucket(k) for k in KEYS[:500]]
    assert len(set(buckets)) == 500


def test_split_bucket_is_pinned_across_runs_and_machines():
    # A value computed once: if it changes, every existing split would be reshuffled.
    assert SPLIT_SALT == "mathpal-split-v1"
    assert split_bucket("tính 2 + 3") == pytest.approx(0.5906247800959745, abs=1e-15)
    assert split_bucket("một cửa hàng có 45 kg gạo.") == pytest.approx(0.33212743107855414, abs=1e-15)


def test_split_bucket_depends_on_salt():
    changed = sum(split_bucket(k) != split_bucket(k, salt="other-salt") for k in KEYS[:100])
    assert changed == 100
    moved = sum(assign_split(k, 0.2, 0.2) != assign_split(k, 0.2, 0.2, salt="other-salt") for k in KEYS[:300])
    assert moved > 50


def test_split_bucket_is_roughly_uniform():
    counts = Counter(int(split_bucket(k) * 10) for k in KEYS)
    assert set(counts) == set(range(10))
    assert all(200 <= c <= 400 for c in counts.values()), counts


def test_assign_split_fractions_are_respected():
    counts = Counter(assign_split(k, 0.1, 0.2) for k in KEYS)
    assert set(counts) == set(SPLITS)
    assert counts["test"] / len(KEYS) == pytest.approx(0.2, abs=0.03)
    assert counts["validation"] / len(KEYS) == pytest.approx(0.1, abs=0.03)
    assert counts["train"] / len(KEYS) == pytest.approx(0.7, abs=0.03)


def test_assign_split_follows_bucket_ranges():
    for key in KEYS[:400]:
        b = split_bucket(key)
        expected = "test" if b < 0.15 else "validation" if b < 0.15 + 0.25 else "train"
        assert assign_split(key, 0.25, 0.15) == expected


def test_assign_split_zero_fractions_put_everything_in_train():
    assert {assign_split(k, 0.0, 0.0) for k in KEYS[:300]} == {"train"}


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.1, -0.1), (1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.7, 0.4)])
def test_assign_split_rejects_bad_fractions(val, test):
    with pytest.raises(ValueError):
        assign_split("tính 2 + 3", val, test)


def test_growing_val_fraction_never_moves_a_problem_out_of_test():
    before = {k: assign_split(k, 0.05, 0.1) for k in KEYS}
    after = {k: assign_split(k, 0.3, 0.1) for k in KEYS}
    assert {k for k, s in before.items() if s == "test"} == {k for k, s in after.items() if s == "test"}
    # Validation only grows, at the expense of train.
    assert all(after[k] == "validation" for k, s in before.items() if s == "validation")


def test_growing_test_fraction_keeps_test_problems_in_test():
    before = {k: assign_split(k, 0.1, 0.05) for k in KEYS}
    after = {k: assign_split(k, 0.1, 0.2) for k in KEYS}
    assert all(after[k] == "test" for k, s in before.items() if s == "test")


def test_duplicates_written_differently_land_in_the_same_split():
    question = "Một hình chữ nhật có chiều dài 18 m, chiều rộng bằng 2/3 chiều dài. Tính diện tích."
    variants = [
        unicodedata.normalize("NFD", question),
        question.upper(),
        "<p>" + question.replace(" ", "&nbsp;", 4) + "</p>",
        "  " + question.replace(", ", ",\n  ") + "  ",
    ]
    assert {normalise_question(v) for v in variants} == {normalise_question(question)}
    # Check it for many salts so the equality is not a coincidence of one bucket.
    for salt in [f"salt-{i}" for i in range(50)]:
        expected = assign_split(normalise_question(question), 0.3, 0.3, salt=salt)
        assert {assign_split(normalise_question(v), 0.3, 0.3, salt=salt) for v in variants} == {expected}
