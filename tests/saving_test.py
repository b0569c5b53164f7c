"""`.keras` round trips of every model class (backbone, TokenFeatures, pretrainer, classifier),
on this backend and across backends: saved by a subprocess under the next backend in the cycle
tensorflow -> jax -> torch -> tensorflow (so each backend loads another's files and has its own
loaded by another), loaded here.

The subprocess is this file run as a script: `python -m tests.saving_test DIR` builds the same
tiny models, gives their state non-default values, saves them to DIR with their outputs.
"""

import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from matpac_keras.audio_classifier import MatpacAudioClassifier
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import TokenFeatures
from matpac_keras.errors import InputError
from matpac_keras.pretrainer import MatpacPretrainer
from matpac_keras.saving import load_backbone, load_model

BACKENDS = ("tensorflow", "jax", "torch")
CLASSES = {
    "backbone": "MatpacBackbone",
    "token_features": "TokenFeatures",
    "pretrainer": "MatpacPretrainer",
    "classifier": "MatpacAudioClassifier",
}
TINY = dict(embed_dim=32, depth=2, num_heads=2, max_frames=64)


def _config(model: keras.Model):
    """`get_config()` with auto-numbered names unnumbered ("matpac_backbone_3" ->
    "matpac_backbone"): the number depends on how many models the process built before."""

    def strip(value):
        if isinstance(value, dict):
            return {
                k: re.sub(r"_\d+$", "", v) if k == "name" and isinstance(v, str) else strip(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [strip(v) for v in value]
        return value

    return strip(model.get_config())


def _inputs():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2, 80, 64)).astype("float32")  # 5 x 4 = 20 patch tokens
    ids_shuffle = np.argsort(rng.uniform(size=(2, 20)), axis=-1).astype("int32")
    return source, ids_shuffle


def build_models() -> dict[str, keras.Model]:
    """The model classes, tiny, with non-default state (teachers, centre, step) and config."""
    keras.utils.set_random_seed(0)
    pretrainer = MatpacPretrainer(
        MatpacBackbone(**TINY),
        predictor_dim=16,
        predictor_depth=1,
        predictor_heads=2,
        num_prediction_heads=2,
        head_hidden_dim=32,
        head_bottleneck_dim=16,
        num_classes=32,
        teacher_temperature=(0.04, 0.07, 10),
        seed=1,
    )
    pretrainer.build(None)
    # Teachers that differ from the students, a centre and a step: all must survive saving.
    rng = np.random.default_rng(1)
    for variable in [*pretrainer.teacher_encoder.weights, *pretrainer.teacher_head.weights]:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + rng.normal(0, 0.01, value.shape).astype(value.dtype))
    pretrainer.center.assign(rng.uniform(0, 0.1, pretrainer.center.shape).astype("float32"))
    pretrainer.step.assign(7)
    backbone = MatpacBackbone(**TINY)
    backbone.build(None)
    features = TokenFeatures(MatpacBackbone(**TINY), all_layers=True)
    features.backbone.build(None)
    classifier = MatpacAudioClassifier(
        MatpacBackbone(**TINY), num_classes=3, dropout=0.2, erase_factor=0.5, num_erasures=1
    )
    classifier.build(None)
    return {
        "backbone": backbone,
        "token_features": features,
        "pretrainer": pretrainer,
        "classifier": classifier,
    }


def model_outputs(name: str, model: keras.Model) -> dict[str, np.ndarray]:
    """Deterministic outputs of a model on fixed inputs, as NumPy arrays."""
    source, ids_shuffle = _inputs()
    if name == "pretrainer":
        out = model.forward_with_mask(source, ids_shuffle, model.step)
        keys = ("z_hat_m", "z_m", "teacher_probs", "loss")
        return {key: keras.ops.convert_to_numpy(out[key]) for key in keys}
    if name == "backbone":
        final, layers = model(source, return_layers=True)
        return {
            "final": keras.ops.convert_to_numpy(final),
            "first": keras.ops.convert_to_numpy(layers[0]),
        }
    if name == "classifier":
        return {"logits": keras.ops.convert_to_numpy(model(source, training=False))}
    return {"features": keras.ops.convert_to_numpy(model(source))}


def save_models(folder: str) -> None:
    """Saves each model as NAME.keras and its outputs and weights as NAME.npz (the weights of
    the pretrainer's student and of the classifier's backbone also as `encoder_I`)."""
    for name, model in build_models().items():
        outputs = model_outputs(name, model)  # first, so that TokenFeatures is built
        model.save(os.path.join(folder, f"{name}.keras"))
        weights = {
            f"weight_{i}": keras.ops.convert_to_numpy(w) for i, w in enumerate(model.weights)
        }
        if name in ("pretrainer", "classifier"):
            for i, w in enumerate(model.backbone.weights):
                weights[f"encoder_{i}"] = keras.ops.convert_to_numpy(w)
        np.savez(os.path.join(folder, f"{name}.npz"), **outputs, **weights)


def _check_loaded(name: str, loaded: keras.Model, weights: list, outputs: dict, atol: float):
    assert type(loaded).__name__ == CLASSES[name]
    assert len(loaded.weights) == len(weights), name
    for saved, restored in zip(weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), saved, err_msg=name)
    for key, expected in model_outputs(name, loaded).items():
        np.testing.assert_allclose(expected, outputs[key], atol=atol, err_msg=f"{name}/{key}")


@pytest.fixture(scope="module")
def models():
    return build_models()


@pytest.mark.parametrize("name", CLASSES)
def test_round_trip_on_this_backend(models, name, tmp_path):
    model = models[name]
    outputs = model_outputs(name, model)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    loaded = load_model(path)
    assert _config(loaded) == _config(model)
    _check_loaded(name, loaded, weights, outputs, atol=1e-6)


def test_saved_state_is_not_the_default(models):
    """Guards the round trip test: a fresh model would differ in every saved piece of state."""
    pretrainer = models["pretrainer"]
    assert int(keras.ops.convert_to_numpy(pretrainer.step)) == 7
    assert np.abs(keras.ops.convert_to_numpy(pretrainer.center)).min() > 0
    student = keras.ops.convert_to_numpy(pretrainer.backbone.encoder.weights[0])
    teacher = keras.ops.convert_to_numpy(pretrainer.teacher_encoder.weights[0])
    assert np.abs(student - teacher).max() > 1e-3


@pytest.fixture(scope="module")
def saved_elsewhere(tmp_path_factory):
    """The folder of the models saved by a subprocess under the next backend in the cycle."""
    other = BACKENDS[(BACKENDS.index(keras.backend.backend()) + 1) % len(BACKENDS)]
    folder = tmp_path_factory.mktemp(f"saved_by_{other}")
    env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.saving_test", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.mark.parametrize("name", CLASSES)
def test_load_what_another_backend_saved(models, saved_elsewhere, name):
    with np.load(saved_elsewhere / f"{name}.npz") as arrays:
        saved = dict(arrays)
    weights = [saved.pop(f"weight_{i}") for i in range(sum(k.startswith("weight_") for k in saved))]
    saved = {key: value for key, value in saved.items() if not key.startswith("encoder_")}
    loaded = load_model(saved_elsewhere / f"{name}.keras")
    assert _config(loaded) == _config(models[name])
    _check_loaded(name, loaded, weights, saved, atol=1e-5)


@pytest.mark.parametrize("name", ["pretrainer", "classifier"])
def test_load_backbone_takes_the_encoder(saved_elsewhere, name):
    encoder = load_backbone(saved_elsewhere / f"{name}.keras")
    assert type(encoder) is MatpacBackbone
    with np.load(saved_elsewhere / f"{name}.npz") as arrays:
        assert sum(key.startswith("encoder_") for key in arrays.files) == len(encoder.weights)
        for i, weight in enumerate(encoder.weights):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(weight), arrays[f"encoder_{i}"]
            )


def _rewrite_member(source, target, name: str, change) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for member in old.namelist():
            data = old.read(member)
            new.writestr(member, change(data) if member == name else data)


@pytest.mark.single_backend
def test_damaged_keras_files_are_named(models, tmp_path):
    # Before: a truncated file or a non-zip gave Keras's "File not found".
    good = tmp_path / "good.keras"
    models["backbone"].save(good)
    data = good.read_bytes()
    cut, garbage, flipped = tmp_path / "cut.keras", tmp_path / "garbage.keras", tmp_path / "f.keras"
    cut.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"not a model at all")
    with zipfile.ZipFile(good) as archive:
        weights = archive.getinfo("model.weights.h5")
    damaged = bytearray(data)  # one byte of the stored weights, inside the zip member
    damaged[weights.header_offset + 30 + len(weights.filename) + weights.file_size // 2] ^= 0xFF
    flipped.write_bytes(bytes(damaged))
    bad_json, no_weights = tmp_path / "json.keras", tmp_path / "no_weights.keras"
    _rewrite_member(good, bad_json, "config.json", lambda d: d[:40])
    with zipfile.ZipFile(good) as old, zipfile.ZipFile(no_weights, "w") as new:
        for member in ("config.json", "metadata.json"):
            new.writestr(member, old.read(member))
    for path, reason in (
        (cut, "not a zip archive"),
        (garbage, "not a zip archive"),
        (flipped, "member model.weights.h5 fails its CRC check"),
        (bad_json, "config.json is not valid JSON"),
        (no_weights, "ValueError: Expected a model.weights.h5"),
    ):
        for load in (load_model, load_backbone):
            with pytest.raises(InputError, match=re.escape(f"{path}: corrupt or truncated")) as e:
                load(path)
            assert reason in str(e.value), (path, str(e.value))
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        load_backbone(tmp_path / "missing.keras")
    (tmp_path / "model.pt").write_bytes(b"PK")
    with pytest.raises(InputError, match=r"model\.pt: expected a \.keras file"):
        load_backbone(tmp_path / "model.pt")


@pytest.mark.single_backend
def test_other_models_are_not_backbones(models, tmp_path):
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(plain)
    assert isinstance(load_model(plain), keras.Sequential)  # a probe head loads
    with pytest.raises(InputError, match=r"plain\.keras: holds a Sequential .*not a MATPAC model"):
        load_backbone(plain)
    features = tmp_path / "features.keras"
    models["token_features"].save(features)
    assert isinstance(load_backbone(features), MatpacBackbone)
    unknown = tmp_path / "unknown.keras"
    _rewrite_member(
        features,
        unknown,
        "config.json",
        lambda d: d.replace(b"TokenFeatures", b"SomeoneElsesModel"),
    )
    with pytest.raises(InputError, match=r"unknown\.keras: holds a SomeoneElsesModel that cannot"):
        load_model(unknown)


if __name__ == "__main__":
    save_models(sys.argv[1])


def test_classifier_of_an_earlier_version_is_refused_saying_what_to_do(tmp_path):
    # The config an earlier version wrote for its `MatpacClassifier` (weights omitted: the
    # refusal comes from the config, before Keras reads any weight).
    path = tmp_path / "classifier.keras"
    config = {
        "module": "matpac_keras.evaluation.classifier",
        "class_name": "MatpacClassifier",
        "config": {"num_classes": 10, "dropout": 0.0},
        "registered_name": "matpac_keras>MatpacClassifier",
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
    for load in (load_model, load_backbone):
        with pytest.raises(InputError, match=r"classifier.keras: a MatpacClassifier, .*fine-tune"):
            load(path)


def test_weights_from_file_draws_no_random_weights(tmp_path):
    """Inside `weights_from_file` initializers are not drawn (zeros), seed states are kept, and
    the context is undone; a model loaded under it holds the file's weights."""
    from matpac_keras.saving import weights_from_file

    with weights_from_file():
        inside = keras.layers.Dense(4)
        inside.build((None, 3))
        seeds = keras.random.SeedGenerator(7)
    assert not np.any(keras.ops.convert_to_numpy(inside.kernel))
    assert np.any(keras.ops.convert_to_numpy(seeds.state))
    outside = keras.layers.Dense(4)
    outside.build((None, 3))
    assert np.any(keras.ops.convert_to_numpy(outside.kernel))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    for saved, read in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(*(keras.ops.convert_to_numpy(w) for w in (read, saved)))
