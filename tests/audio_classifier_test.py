"""MatpacAudioClassifier (a keras-hub Task): pooling equals the clip embedding, both heads
against NumPy, config, .keras and preset round trips, `fit`/`predict` on waveforms through its
preprocessor, SpecAugment-style masking, and a few finite fine-tuning steps on this backend."""

import keras
import numpy as np
import pytest

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.evaluation.finetune_data import CropBatches, targets_of
from matpac_keras.evaluation.layerwise import lr_multipliers
from matpac_keras.frontend import LogMelSpectrogram
from matpac_keras.optimizers import AdamW
from tests.test_case import run_task_test


def _classifier(**kwargs):
    keras.utils.set_random_seed(0)
    backbone = MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=64)
    model = MatpacAudioClassifier(backbone, num_classes=3, **kwargs)
    model.build(None)
    return model


def test_pooling_is_the_clip_embedding():
    model = _classifier()
    logmel = np.random.default_rng(0).normal(size=(2, 80, 48)).astype("float32")
    expected = EmbeddingExtractor(model.backbone).embed_logmel(logmel).embedding
    got = keras.ops.convert_to_numpy(model.pooled_features(logmel))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    head = model.output_dense.get_weights()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(logmel)), expected @ head[0] + head[1], atol=1e-5
    )


def test_clip_logits_of_long_clips_use_the_embedding():
    model = _classifier()
    rng = np.random.default_rng(1)
    clips = [rng.normal(size=n).astype("float32") * 0.1 for n in (16000, 4000)]  # 98 and 23 frames
    embeddings = np.stack(
        [r.embedding for r in EmbeddingExtractor(model.backbone).embed_clips(clips)]
    )
    kernel, bias = model.output_dense.get_weights()
    np.testing.assert_allclose(model.clip_logits(clips), embeddings @ kernel + bias, atol=1e-5)


def test_clip_logits_by_crops_match_validation_batches():
    model = _classifier()
    rng = np.random.default_rng(5)
    short = [rng.normal(size=n).astype("float32") * 0.1 for n in (5000, 9000)]  # < 64 frames
    logmel, _ = CropBatches(short, np.zeros((2, 1), "float32"), 64, 2, training=False)[0]
    expected = keras.ops.convert_to_numpy(model(logmel))
    np.testing.assert_allclose(model.clip_logits(short, crop_frames=64), expected, atol=1e-5)
    long = rng.normal(size=24000).astype("float32") * 0.1  # 148 frames: 3 crops, the last padded
    full = keras.ops.convert_to_numpy(LogMelSpectrogram()(long[None]))[0]
    full = np.pad(full, ((0, 0), (0, 192 - full.shape[1])))
    crops = np.stack([full[:, :64], full[:, 64:128], full[:, 128:]])
    pooled = keras.ops.convert_to_numpy(model.pooled_features(crops)).mean(axis=0)
    kernel, bias = model.output_dense.get_weights()
    np.testing.assert_allclose(
        model.clip_logits([long], crop_frames=64)[0], pooled @ kernel + bias, atol=1e-5
    )


def test_config_and_keras_file_round_trip(tmp_path):
    model = _classifier(dropout=0.2, erase_factor=0.5, erase_scale=(0.05, 0.1), num_erasures=3)
    config = model.get_config()
    assert {k: config[k] for k in ("num_classes", "dropout", "erase_factor", "num_erasures")} == {
        "num_classes": 3, "dropout": 0.2, "erase_factor": 0.5, "num_erasures": 3
    }  # fmt: skip
    clone = MatpacAudioClassifier.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(2).normal(size=(2, 80, 32)).astype("float32")
    model.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    assert isinstance(loaded, MatpacAudioClassifier) and len(loaded.erasers) == 3
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )


def test_masking_only_while_training():
    model = _classifier(erase_factor=1.0, num_erasures=1)
    x = np.random.default_rng(3).normal(size=(4, 80, 64)).astype("float32") + 5
    erased = keras.ops.convert_to_numpy(model.erasers[0](x[..., None], training=True))[..., 0]
    zero = erased == 0
    assert zero.any(axis=(1, 2)).all()  # factor 1: every example has a masked rectangle
    np.testing.assert_array_equal(erased[~zero], x[~zero])
    for b in range(4):  # the masked cells form one rectangle
        rows, cols = np.nonzero(zero[b])
        assert zero[b, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    plain = MatpacAudioClassifier(model.backbone, 3)  # same backbone, no masking layers
    plain.build(None)
    plain.output_dense.set_weights(model.output_dense.get_weights())
    assert not plain.erasers
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(plain(x)),
        atol=1e-5,
    )


def test_a_few_finetuning_steps_are_finite():
    model = _classifier(dropout=0.1, erase_factor=0.5)
    rng = np.random.default_rng(4)
    clips = [rng.normal(size=n).astype("float32") * 0.1 for n in (9000, 12000, 6000, 10400)] * 2
    targets = targets_of(np.arange(8) % 3, None, 3)
    batches = CropBatches(clips, targets, 64, 4, training=True, mixup_alpha=0.4, seed=0)
    before = [np.array(w) for w in model.get_weights()]
    model.compile(
        optimizer=AdamW(1e-3, lr_multipliers=lr_multipliers(model, 0.5)),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(batches, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True) if a.size > 1)


def test_bad_arguments():
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    with pytest.raises(ValueError, match="num_classes"):
        MatpacAudioClassifier(backbone, 0)
    with pytest.raises(ValueError, match="erase_factor"):
        MatpacAudioClassifier(backbone, 2, erase_factor=1.5)
    with pytest.raises(ValueError, match="pooling must be one of"):
        MatpacAudioClassifier(backbone, 2, pooling="max")


def _set_head_norm_statistics(model, rng):
    norm = model.head_norm
    norm.moving_mean.assign(rng.normal(size=norm.moving_mean.shape).astype("float32"))
    norm.moving_variance.assign(rng.uniform(0.5, 2.0, norm.moving_variance.shape).astype("float32"))


def test_frequency_mean_head_with_batchnorm_against_numpy():
    # The authors' AudioSet head (SPEC section 9): mean over the 5 frequency tokens of the clip
    # embedding, BatchNorm without scale/offset in eval mode (eps 1e-5), then Dense.
    model = _classifier(pooling="freq_mean", head_norm=True)
    assert model.head_dim == 32 and model.head_norm.epsilon == 1e-5
    rng = np.random.default_rng(6)
    _set_head_norm_statistics(model, rng)
    logmel = rng.normal(size=(2, 80, 48)).astype("float32")
    embedding = EmbeddingExtractor(model.backbone).embed_logmel(logmel).embedding  # [2, 5 * 32]
    features = embedding.reshape(2, 5, 32).mean(axis=1)
    mean, var = (keras.ops.convert_to_numpy(v) for v in model.head_norm.non_trainable_weights)
    kernel, bias = model.output_dense.get_weights()
    expected = (features - mean) / np.sqrt(var + 1e-5) @ kernel + bias
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(logmel)), expected, atol=1e-4)
    clips = [rng.normal(size=n).astype("float32") * 0.1 for n in (16000, 4000)]
    embeddings = np.stack(
        [r.embedding for r in EmbeddingExtractor(model.backbone).embed_clips(clips)]
    )
    features = embeddings.reshape(2, 5, 32).mean(axis=1)
    np.testing.assert_allclose(
        model.clip_logits(clips), (features - mean) / np.sqrt(var + 1e-5) @ kernel + bias, atol=1e-4
    )


def test_default_compile_fits_integer_labels():
    model = _classifier()
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    x = np.random.default_rng(7).normal(size=(4, 80, 32)).astype("float32")
    history = model.fit(x, np.array([0, 1, 2, 1]), epochs=2, batch_size=2, verbose=0)
    assert set(history.history) == {"loss", "sparse_categorical_accuracy"}
    assert np.isfinite(history.history["loss"]).all()


def test_preset_round_trip_and_start_from_a_backbone_preset(tmp_path):
    from matpac_keras.saving import save_preset

    model = _classifier(pooling="freq_mean", head_norm=True, dropout=0.1)
    _set_head_norm_statistics(model, np.random.default_rng(8))
    x = np.random.default_rng(9).normal(size=(2, 80, 32)).astype("float32")
    model.save_to_preset(tmp_path / "task")
    loaded = MatpacAudioClassifier.from_preset(str(tmp_path / "task"))
    assert loaded.pooling == "freq_mean" and loaded.head_norm is not None
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )
    # A converted backbone preset (backbone + audio converter) starts a classifier whose
    # preprocessor turns waveforms into log-mels: fit and predict then take 16 kHz audio.
    save_preset(model.backbone, tmp_path / "backbone")
    fresh = MatpacAudioClassifier.from_preset(str(tmp_path / "backbone"), num_classes=4)
    assert fresh.preprocessor is not None and fresh.num_classes == 4
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(fresh.backbone.cls_token),
        keras.ops.convert_to_numpy(model.backbone.cls_token),
    )
    waves = np.random.default_rng(10).normal(size=(4, 8000)).astype("float32") * 0.1
    history = fresh.fit(waves, np.array([0, 1, 2, 3]), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    logmel = keras.ops.convert_to_numpy(LogMelSpectrogram()(waves))
    np.testing.assert_allclose(
        fresh.predict(waves, verbose=0), keras.ops.convert_to_numpy(fresh(logmel)), atol=1e-5
    )


def test_task_contract_on_log_mel():
    model = _classifier()
    logmel = np.random.default_rng(2).normal(size=(4, 80, 64)).astype("float32")
    run_task_test(model, (logmel, np.array([0, 1, 2, 1])), logmel[:3], (3, 3))
