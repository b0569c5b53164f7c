"""The protocol: held-out validation, folds, runs and the task metric."""

import dataclasses

import numpy as np
import pytest

from matpac_keras.evaluation import metrics, protocol
from matpac_keras.evaluation.probe import ProbeConfig, ProbeData
from matpac_keras.evaluation.tasks import TASKS, get_task


def _data(n, offset=0):
    return ProbeData(np.arange(offset, offset + n, dtype="float32")[:, None], np.arange(n) % 3)


def test_hold_out_is_seeded_disjoint_and_sized():
    data = _data(50)
    train, valid = protocol.hold_out(data, 0.1, seed=3)
    assert (len(train), len(valid)) == (45, 5)
    assert sorted(np.r_[train.x[:, 0], valid.x[:, 0]]) == list(range(50))
    again, _ = protocol.hold_out(data, 0.1, seed=3)
    other, _ = protocol.hold_out(data, 0.1, seed=4)
    np.testing.assert_array_equal(train.x, again.x)
    assert not np.array_equal(train.x, other.x)
    assert [len(s) for s in protocol.hold_out(_data(2), 0.1, 0)] == [1, 1]
    with pytest.raises(ValueError, match="1 training clip"):
        protocol.hold_out(_data(1), 0.1, 0)


def test_fold_evaluations_leave_one_fold_out():
    task = get_task("esc50")
    splits = {f: _data(20, 100 * k) for k, f in enumerate(task.folds)}
    evaluations = protocol.evaluations(task, splits, 0.1, seed=0)
    assert [e[0] for e in evaluations] == list(task.folds)
    for k, (fold, train, valid, test) in enumerate(evaluations):
        assert test is splits[fold]
        used = np.r_[train.x[:, 0], valid.x[:, 0]]
        assert len(valid) == 8 and len(used) == 80
        assert set(used // 100) == set(range(5)) - {k}


def test_official_and_held_out_validation():
    gtzan, fsdd = get_task("gtzan"), get_task("spoken_digit")
    splits = {"train": _data(30), "valid": _data(5, 50), "test": _data(6, 80)}
    [(name, train, valid, test)] = protocol.evaluations(gtzan, splits, 0.1, 0)
    assert (name, train, valid, test) == ("test", splits["train"], splits["valid"], splits["test"])
    [(_, train, valid, _)] = protocol.evaluations(fsdd, splits, 0.1, 0)
    assert (len(train), len(valid)) == (27, 3)
    with pytest.raises(ValueError, match=r"missing split\(s\) \['valid'\]"):
        protocol.evaluations(gtzan, {"train": _data(3), "test": _data(3)}, 0.1, 0)


def test_masked_score_leaves_out_unannotated_classes():
    task = get_task("openmic")
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], bool)
    mask = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0]], bool)
    logits = np.array([[0.9, 0.1, 5], [0.2, 0.8, 5], [0.4, 0.3, 5]])
    expected = metrics.mean_average_precision(labels[:, :2], logits[:, :2])
    assert protocol.score(task, labels, logits, mask) == pytest.approx(expected)


def test_evaluate_task_runs_and_fold_means():
    task = dataclasses.replace(TASKS["esc50"], folds=("fold1", "fold2"))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4

    def fold(n):
        labels = rng.integers(0, 3, n)
        return ProbeData(centres[labels] + rng.normal(size=(n, 8)), labels)

    splits = {f: fold(40) for f in task.folds}
    config = ProbeConfig(learning_rate=5e-2, batch_size=16, max_epochs=6)
    result = protocol.evaluate_task(
        task, splits, 3, config, protocol.RunConfig(runs=2, first_seed=7)
    )
    assert result.seeds == [7, 8] and result.evaluations == list(task.folds)
    assert np.shape(result.per_evaluation) == (2, 2)
    np.testing.assert_allclose(result.runs, np.mean(result.per_evaluation, axis=1))
    assert min(result.runs) > 0.9
