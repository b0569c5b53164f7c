"""The linear probe: learning, best-epoch selection, early stopping, losses, presets."""

import dataclasses
import math

import keras
import numpy as np
import pytest

from matpac_keras.evaluation import metrics, probe


def _blobs(n, num_classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(num_classes, dim)) * 3
    labels = rng.integers(0, num_classes, n)
    return probe.ProbeData(centres[labels] + rng.normal(size=(n, dim)), labels)


@pytest.mark.parametrize("preset", ["paper", "evar"])
def test_probe_learns_separable_classes(preset):
    config = probe.ProbeConfig(
        **{**vars(probe.PRESETS[preset]), "learning_rate": 3e-2, "max_epochs": 15}
    )
    train, valid, test = _blobs(256, seed=1), _blobs(64, seed=2), _blobs(128, seed=3)
    model, best = probe.train_probe(
        train, valid, 4, config, seed=0, metric=lambda d, s: metrics.accuracy(d.labels, s)
    )
    assert 0 <= best < 15
    assert metrics.accuracy(test.labels, probe.predict(model, test.x)) > 0.95


def test_multi_label_masked_probe_learns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype("float32")
    labels = (x[:, :3] > 0).astype(bool)  # label c is the sign of dimension c
    mask = rng.random(labels.shape) < 0.7
    noisy = np.where(mask, labels, rng.random(labels.shape) < 0.5)  # masked-out: pure noise
    data = probe.ProbeData(x, noisy, mask)
    config = probe.ProbeConfig(learning_rate=3e-2, max_epochs=20)
    model, _ = probe.train_probe(
        data.subset(np.arange(300)), data.subset(np.arange(300, 400)), 3, config, seed=0
    )
    test_x = rng.normal(size=(200, 8)).astype("float32")
    scores = probe.predict(model, test_x)
    assert metrics.mean_average_precision(test_x[:, :3] > 0, scores) > 0.95


def test_keep_best_restores_lowest_validation_loss():
    train, valid = _blobs(64, seed=1), _blobs(32, seed=2)
    keras.utils.set_random_seed(0)
    model = probe.build_probe(16, 4, probe.PRESETS["paper"])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(0.3), loss=loss)  # large lr: noisy val loss
    keep = probe.KeepBest(None, patience=None)
    history = model.fit(
        train.x,
        train.labels,
        epochs=12,
        validation_data=(valid.x, valid.labels),
        callbacks=[keep],
        verbose=0,
        batch_size=16,
    )
    val = history.history["val_loss"]
    assert keep.best_epoch == int(np.argmin(val))
    assert keep.best_epoch < len(val) - 1 or val[-1] == min(val)
    final = loss(valid.labels, probe.predict(model, valid.x))
    assert float(final) == pytest.approx(min(val), rel=1e-4)


def test_metric_selection_takes_later_tie_and_stops_after_patience():
    values = iter([0.1, 0.3, 0.3, 0.2, 0.25, 0.9, 0.9])
    keep = probe.KeepBest(lambda model: next(values), patience=2)
    train = _blobs(16)
    model = probe.build_probe(16, 4, probe.PRESETS["paper"])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = model.fit(train.x, train.labels, epochs=7, callbacks=[keep], verbose=0)
    assert keep.best_epoch == 2  # 0.3 at epochs 1 and 2: the later one
    assert len(history.history["loss"]) == 5  # epochs 3 and 4 without improvement: stop


def test_masked_binary_crossentropy_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3)).astype("float32") * 4
    labels = (rng.random((5, 3)) < 0.5).astype("float32")
    mask = (rng.random((5, 3)) < 0.6).astype("float32")
    prob = 1 / (1 + np.exp(-logits.astype("float64")))
    bce = -(labels * np.log(prob) + (1 - labels) * np.log(1 - prob))
    expected = (bce * mask).sum(axis=1) / 3
    got = probe.masked_binary_crossentropy(np.concatenate([labels, mask], 1), logits)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-5)


def test_standardisation_torch_init_and_l2():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(50, 6)) * [1, 2, 3, 4, 5, 0] + 7).astype("float32")
    config = probe.ProbeConfig(standardize=True, init="torch", weight_decay=0.02)
    keras.utils.set_random_seed(0)
    model = probe.build_probe(6, 3, config, x)
    scaled = keras.ops.convert_to_numpy(model.get_layer("scaler")(x))
    np.testing.assert_allclose(scaled.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(scaled.std(0), [1, 1, 1, 1, 1, 0], atol=1e-4)
    kernel, bias = model.get_layer("linear").get_weights()
    bound = 1 / math.sqrt(6)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(bias).max() > 0.2 * bound  # not Keras's zero bias
    model(x[:1])
    expected = 0.01 * ((kernel**2).sum() + (bias**2).sum())
    assert float(sum(keras.ops.convert_to_numpy(v) for v in model.losses)) == pytest.approx(
        expected, rel=1e-5
    )


def test_bad_configs_and_data():
    with pytest.raises(ValueError, match="select_by"):
        probe.ProbeConfig(select_by="accuracy")
    with pytest.raises(ValueError, match="init"):
        probe.ProbeConfig(init="he")
    with pytest.raises(ValueError, match="N labels"):
        probe.ProbeData(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="metric function"):
        probe.train_probe(_blobs(8), _blobs(8), 4, probe.PRESETS["evar"], seed=0)


@pytest.mark.parametrize("standardize", [False, True])
def test_probe_weights_are_the_probe_as_one_affine_map(standardize):
    rng = np.random.default_rng(3)
    train_x = rng.normal(2.0, 3.0, (64, 12)).astype("float32")
    train_x[:, 5] = 1.5  # a constant dimension: std 0, passed through centred
    config = dataclasses.replace(probe.PRESETS["evar"], standardize=standardize)
    model = probe.build_probe(12, 4, config, train_x)
    model.get_layer("linear").set_weights(
        [rng.normal(size=(12, 4)).astype("float32"), rng.normal(size=4).astype("float32")]
    )
    x = rng.normal(2.0, 3.0, (8, 12)).astype("float32")
    kernel, bias = probe.probe_weights(model)
    expected = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(x @ kernel + bias, expected, rtol=1e-5, atol=1e-4)
    if standardize:  # a real fold: not the Dense weights themselves
        assert np.abs(kernel - model.get_layer("linear").get_weights()[0]).max() > 0.1
