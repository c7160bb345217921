"""The data a recipe trains on: read whole, and the tokenised cache keyed on its content and the tokenizer's."""

from __future__ import annotations

import json
import shutil

import pytest

from mathpal_train.training_data import DataChanged, DataError, key_prepared_data, prepared_path, read_data_files
from tests.conftest import chat_example


@pytest.fixture()
def recipe(tmp_path, tiny_model_dir, monkeypatch):
    """A recipe's data and tokenizer keys, over files of our own."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name, count in (("train", 6), ("validation", 2)):
        rows = "".join(json.dumps(chat_example(i), ensure_ascii=False) + "\n" for i in range(count))
        (tmp_path / "data" / f"{name}.jsonl").write_text(rows, encoding="utf-8")
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    return {
        "base_model": "model",
        "datasets": [{"path": "data/train.jsonl", "ds_type": "json", "type": "chat_template"}],
        "test_datasets": [{"path": "data/validation.jsonl", "ds_type": "json", "type": "chat_template"}],
        "dataset_prepared_path": ".mathpal/prepared/smoke",
        "output_dir": "outputs/smoke",
    }


def test_the_files_are_read_whole_with_their_rows_and_hash(recipe, tmp_path):
    train, validation = read_data_files(recipe)
    assert (train.group, train.rows, validation.group, validation.rows) == ("datasets", 6, "test_datasets", 2)
    assert train.contents[0] == tuple(m["content"] for m in chat_example(0)["messages"])
    (tmp_path / "data" / "train.jsonl").write_text('{"messages": [{"role": "user"}]}\n')
    with pytest.raises(DataError, match=r"data/train.jsonl:1: messages\[0\] is not a \{role, content\} object"):
        read_data_files(recipe)


def test_the_cache_changes_with_the_rows_and_the_tokenizer_and_only_with_them(recipe, tmp_path):
    first = prepared_path(recipe)
    assert first.parent == tmp_path.joinpath(".mathpal/prepared/smoke").relative_to(tmp_path)
    assert first.name.startswith("data-") and prepared_path(recipe) == first  # the same files, the same cache
    assert prepared_path({**recipe, "lora_r": 4, "max_steps": 3}) == first  # keys that do not shape tokens
    train = tmp_path / "data" / "train.jsonl"
    train.write_text(train.read_text(encoding="utf-8").replace("quyển vở", "cái bút"), encoding="utf-8")
    second = prepared_path(recipe)
    assert second != first
    config = tmp_path / "model" / "tokenizer_config.json"
    config.write_text(config.read_text().replace("<end_of_turn>", "<end_of_turn>", 1) + "\n")  # a rebuilt tokenizer
    assert prepared_path(recipe) not in (first, second)
    keyed = prepared_path(recipe)
    assert prepared_path({**recipe, "dataset_prepared_path": str(keyed)}) == keyed  # never nested
    assert prepared_path({**recipe, "dataset_prepared_path": None}).parent.name == "last_run_prepared"


def test_the_job_keys_axolotls_cache_and_refuses_data_changed_since_the_launch(recipe, tmp_path):
    """What RunStatePlugin does before Axolotl loads the datasets (its config object is a dict too)."""
    from axolotl.utils.dict import DictDefault

    from mathpal_train.run_record import write_record

    cfg = DictDefault(recipe)
    keyed = key_prepared_data(cfg)
    assert cfg.dataset_prepared_path == str(keyed) == str(prepared_path(recipe))
    write_record(tmp_path / "outputs" / "smoke" / "pending", {"dataset": {"prepared_path": str(tmp_path / keyed)}})
    assert key_prepared_data(DictDefault(recipe)) == keyed  # what mathpal train recorded
    (tmp_path / "data" / "validation.jsonl").write_text(json.dumps(chat_example(9)) + "\n")  # a re-export meanwhile
    with pytest.raises(DataChanged, match=r"the training data or tokenizer changed after `mathpal train` checked"):
        key_prepared_data(DictDefault(recipe))
