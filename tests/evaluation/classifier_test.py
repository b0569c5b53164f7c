"""MatpacClassifier: pooling equals the clip embedding, config and .keras round trips,
SpecAugment-style masking, and a few finite fine-tuning steps on this backend."""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.evaluation.classifier import MatpacClassifier
from matpac_keras.evaluation.finetune_data import CropBatches, targets_of
from matpac_keras.evaluation.layerwise import lr_multipliers
from matpac_keras.frontend import LogMelSpectrogram
from matpac_keras.optimizers import AdamW


def _classifier(**kwargs):
    keras.utils.set_random_seed(0)
    backbone = MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=64)
    model = MatpacClassifier(backbone, num_classes=3, **kwargs)
    model.build(None)
    return model


def test_pooling_is_the_clip_embedding():
    model = _classifier()
    logmel = np.random.default_rng(0).normal(size=(2, 80, 48)).astype("float32")
    expected = EmbeddingExtractor(model.backbone).embed_logmel(logmel).embedding
    got = keras.ops.convert_to_numpy(model.pooled_features(logmel))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    head = model.head.get_weights()
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
    kernel, bias = model.head.get_weights()
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
    kernel, bias = model.head.get_weights()
    np.testing.assert_allclose(
        model.clip_logits([long], crop_frames=64)[0], pooled @ kernel + bias, atol=1e-5
    )


def test_config_and_keras_file_round_trip(tmp_path):
    model = _classifier(dropout=0.2, erase_factor=0.5, erase_scale=(0.05, 0.1), num_erasures=3)
    config = model.get_config()
    assert {k: config[k] for k in ("num_classes", "dropout", "erase_factor", "num_erasures")} == {
        "num_classes": 3, "dropout": 0.2, "erase_factor": 0.5, "num_erasures": 3
    }  # fmt: skip
    clone = MatpacClassifier.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(2).normal(size=(2, 80, 32)).astype("float32")
    model.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    assert isinstance(loaded, MatpacClassifier) and len(loaded.erasers) == 3
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
    plain = MatpacClassifier(model.backbone, 3)  # same backbone, no masking layers
    plain.build(None)
    plain.head.set_weights(model.head.get_weights())
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
        MatpacClassifier(backbone, 0)
    with pytest.raises(ValueError, match="erase_factor"):
        MatpacClassifier(backbone, 2, erase_factor=1.5)
