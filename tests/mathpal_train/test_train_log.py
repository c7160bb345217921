"""Reading the trainer's metric dicts out of Axolotl logs."""

from mathpal_train.train_log import eval_losses, metric_dicts, train_steps

LOG = """[2026-11-25 09:20:21,632] [INFO] [axolotl.train] Starting trainer...
{'eval_loss': '8.143', 'eval_runtime': '20.92', 'memory/max_active (GiB)': '0', 'epoch': 0}
{'loss': '8.257', 'grad_norm': '2.991', 'learning_rate': '0', 'tokens/trainable': 6770, 'epoch': '0.03306'}
{'loss': '12.9', 'grad_norm': 'nan', 'tokens/train_per_sec_per_gpu': '692.4', 'epoch': '0.06612'}
{'eval_loss': 'nan', 'eval_runtime': '1.5', 'epoch': '0.07'}
{'loss': '7.9', 'grad_norm': '2.6', 'epoch': '0.1', 'note': __import__('os')}
{'eval_loss': '7.181', 'eval_ppl': '1.3e+03', 'epoch': '0.1322'}
{'train_runtime': '34.73', 'train_loss': '2.147'}
{'loss': '7.8', 'grad_norm': '2.5', 'learning_rate': '0.0045
"""


def test_metric_dicts_reads_loss_and_eval_entries_as_numbers():
    entries = metric_dicts(LOG)
    assert [("eval_loss" in e, e.get("loss", e.get("eval_loss"))) for e in entries][:2] == [
        (True, 8.143),
        (False, 8.257),
    ]
    assert entries[1]["tokens/trainable"] == 6770 and entries[1]["learning_rate"] == 0.0
    assert entries[2]["tokens/train_per_sec_per_gpu"] == 692.4
    assert entries[2]["grad_norm"] != entries[2]["grad_norm"]  # 'nan' is a float NaN
    assert len(entries) == 5  # the line with code, the train summary and the cut-off line are not entries
    assert entries[4]["eval_ppl"] == 1300.0


def test_code_in_a_log_line_is_never_run_and_the_line_is_skipped():
    assert all(e.get("loss") != 7.9 for e in metric_dicts(LOG))


def test_train_steps_are_the_entries_with_a_grad_norm():
    assert [e["loss"] for e in train_steps(LOG)] == [8.257, 12.9]  # the cut-off last line is skipped


def test_eval_losses_keep_finite_ones_with_their_epoch():
    assert eval_losses(LOG) == [(0.0, 8.143), (0.1322, 7.181)]
