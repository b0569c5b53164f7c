"""`matpac_keras.encoder_runtime`: the exported encoder in ONNX Runtime and OpenVINO computes
`TokenFeatures.predict_on_batch` (last layer or all layers) at every window length, checks its
inputs, and `cached_encoder` exports once per weights.

Exports run under KERAS_BACKEND=tensorflow (Keras exports from TensorFlow graphs), so the module
runs once, under TensorFlow (single_backend).
"""

import keras
import numpy as np
import pytest

from matpac_keras import encoder_runtime
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import TokenFeatures
from tests.conftest import relative_error

pytestmark = pytest.mark.single_backend

MAX_FRAMES = 64
LENGTHS = (64, 48, 16)  # a full window, a shorter one, one patch column


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(3)
    return MatpacBackbone(embed_dim=32, depth=2, num_heads=2, max_frames=MAX_FRAMES)


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(0)
    return {t: rng.normal(size=(3, 80, t)).astype("float32") for t in LENGTHS}


@pytest.fixture(scope="module")
def exports(backbone, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for runtime, suffix in encoder_runtime.SUFFIXES.items():
        for all_layers in (False, True):
            path = folder / f"encoder_{int(all_layers)}{suffix}"
            paths[runtime, all_layers] = encoder_runtime.export_token_features(
                backbone, path, all_layers=all_layers
            )
    return paths


RUNNERS = {
    "onnx": lambda path: encoder_runtime.OnnxRuntimeEncoder(path),
    "openvino": lambda path: encoder_runtime.OpenVinoEncoder(path),
    "openvino-dynamic": lambda path: encoder_runtime.OpenVinoEncoder(path, static_shapes=False),
}


@pytest.mark.parametrize("all_layers", [False, True])
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_runtime_equals_token_features_at_every_length(
    backbone, windows, exports, runner, all_layers
):
    encoder = RUNNERS[runner](exports[runner.split("-")[0], all_layers])
    features = TokenFeatures(backbone, all_layers=all_layers)
    layers = backbone.depth if all_layers else 1
    assert encoder.layers == layers
    for t, x in windows.items():
        expected = keras.ops.convert_to_numpy(features.predict_on_batch(x))
        out = encoder(x)
        assert out.dtype == np.float32
        assert out.shape == expected.shape == (3, layers, t // 16, 5 * backbone.embed_dim)
        assert relative_error(out, expected) < 1e-5
    # A second call at a length seen before reuses its compiled model (and still agrees).
    out = encoder(windows[48][:1])
    expected = keras.ops.convert_to_numpy(features.predict_on_batch(windows[48][:1]))
    assert relative_error(out, expected) < 1e-5


def test_openvino_bfloat16_is_opt_in_and_close(backbone, windows, exports):
    encoder = encoder_runtime.OpenVinoEncoder(exports["openvino", False], precision="bfloat16")
    expected = keras.ops.convert_to_numpy(TokenFeatures(backbone).predict_on_batch(windows[64]))
    assert relative_error(encoder(windows[64]), expected) < 5e-2
    with pytest.raises(ValueError, match="precision must be one of"):
        encoder_runtime.OpenVinoEncoder(exports["openvino", False], precision="float16")


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 64, 48), r"windows must be \[batch, 80, frames\]"),
        ((80, 48), r"windows must be \[batch, 80, frames\]"),
        ((2, 80, 40), "multiples of 16 frames up to 64"),
        ((2, 80, 80), "multiples of 16 frames up to 64"),
        ((0, 80, 48), "at least one window"),
    ],
)
def test_bad_windows_are_refused_with_a_clear_error(exports, shape, message):
    encoder = encoder_runtime.OnnxRuntimeEncoder(exports["onnx", False])
    with pytest.raises(ValueError, match=message):
        encoder(np.zeros(shape, "float32"))


def test_files_without_their_export_metadata_are_refused(tmp_path, exports):
    with pytest.raises(FileNotFoundError, match="no exported encoder"):
        encoder_runtime.OnnxRuntimeEncoder(tmp_path / "missing.onnx")
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(open(exports["onnx", False], "rb").read())
    with pytest.raises(ValueError, match="export_token_features"):
        encoder_runtime.OnnxRuntimeEncoder(bare)


def test_export_needs_a_known_suffix(backbone, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.onnx or \.xml"):
        encoder_runtime.export_token_features(backbone, tmp_path / "encoder.pb")


def test_cached_encoder_exports_once_per_weights(backbone, windows, tmp_path, monkeypatch):
    calls = []
    export = encoder_runtime.export_token_features

    def counting_export(*args, **kwargs):
        calls.append(args[1])
        return export(*args, **kwargs)

    monkeypatch.setattr(encoder_runtime, "export_token_features", counting_export)
    first = encoder_runtime.cached_encoder(backbone, "onnx", cache_dir=tmp_path)
    second = encoder_runtime.cached_encoder(backbone, "onnx", cache_dir=tmp_path)
    assert len(calls) == 1 and first.path == second.path
    np.testing.assert_array_equal(first(windows[48]), second(windows[48]))
    # No staging folder is left behind.
    assert [p.name for p in tmp_path.iterdir()] == [
        f"{encoder_runtime.weights_fingerprint(backbone)}-onnx"
    ]
    with pytest.raises(ValueError, match="runtime must be one of"):
        encoder_runtime.cached_encoder(backbone, "tflite", cache_dir=tmp_path)


def test_fingerprint_follows_weights_and_layers(backbone):
    other = MatpacBackbone.from_config(backbone.get_config())
    other.set_weights(backbone.get_weights())
    key = encoder_runtime.weights_fingerprint(backbone)
    assert encoder_runtime.weights_fingerprint(other) == key
    assert encoder_runtime.weights_fingerprint(backbone, all_layers=True) != key
    weights = other.get_weights()
    weights[-1] = weights[-1] + 1e-3
    other.set_weights(weights)
    assert encoder_runtime.weights_fingerprint(other) != key
