"""`MatpacBackbone.export(path, format=...)` for ONNX, OpenVINO and LiteRT, each file run in its
own runtime (ONNX Runtime, OpenVINO, the LiteRT interpreter) at two input lengths against Keras.

Keras exports these formats from TensorFlow graphs; a backbone is backend-independent (a preset
or `.keras` written under any backend loads under TensorFlow), so the exports run under
`KERAS_BACKEND=tensorflow`, and other backends get a clear error instead of a failure deep in
the exporter.
"""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.convert import model_from_state_dict
from tests.conftest import FIXTURE_HEADS, relative_error

LENGTHS = (128, 48)  # the fixture model's longest input (8 patch columns), and a shorter one


@pytest.fixture(scope="module")
def backbone(encoder_only_state):
    return model_from_state_dict(encoder_only_state, **FIXTURE_HEADS)


@pytest.fixture(scope="module")
def spectrograms(fixture_arrays):
    logmel = fixture_arrays("embed")["waveform"]  # any realistic input: the fixture's clips
    from matpac_keras.frontend import LogMelSpectrogram

    logmel = keras.ops.convert_to_numpy(LogMelSpectrogram()(logmel))
    return [np.ascontiguousarray(logmel[:, :, :n]) for n in LENGTHS]


def _onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _openvino(path, x):
    import openvino

    # On CPUs with bf16 support (avx512_bf16, AMX) OpenVINO computes in bfloat16 unless told
    # otherwise (4e-3 relative here): the f32 hint is what float32 parity needs.
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    return openvino.Core().compile_model(path, "CPU", config)(x)[0]


def _litert(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    signature = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(signature["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(signature["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


RUNTIMES = {
    "onnx": (".onnx", _onnx),
    "openvino": (".xml", _openvino),
    "litert": (".tflite", _litert),
}


@pytest.mark.parametrize("format", sorted(RUNTIMES))
def test_exported_backbone_runs_in_its_runtime_at_two_lengths(
    backbone, spectrograms, tmp_path, format
):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("exports run under KERAS_BACKEND=tensorflow (see the module docstring)")
    suffix, run = RUNTIMES[format]
    path = str(tmp_path / f"backbone{suffix}")
    backbone.export(path, format=format, verbose=False)  # no call needed before exporting
    for x in spectrograms:
        expected = keras.ops.convert_to_numpy(backbone(x))
        out = run(path, x)
        assert (
            out.shape == expected.shape == (len(x), 1 + 5 * (x.shape[2] // 16), backbone.embed_dim)
        )
        assert relative_error(out, expected) < 1e-4


def test_gelu_is_pytorchs_exact_formula():
    from math import erf, sqrt

    from matpac_keras.layers import gelu

    x = np.linspace(-6, 6, 49).astype("float32")
    expected = [v / 2 * (1 + erf(v / sqrt(2))) for v in x.astype("float64")]
    # float32 `1 + erf` rounds to 6e-8 near -1 (as PyTorch's kernel does): 1e-6 absolute. The
    # tanh approximation is 4.7e-4 away, `erfc`'s formula within 1e-7.
    out = keras.ops.convert_to_numpy(gelu(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_other_backends_are_told_where_exports_run(backbone, tmp_path):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("the error is for the other backends")
    with pytest.raises(ValueError, match="KERAS_BACKEND=tensorflow"):
        backbone.export(str(tmp_path / "m.onnx"), format="onnx")


def test_backbone_input_signature_leaves_batch_and_frames_free():
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    assert backbone.input_shape_spec == (None, 80, None)


@pytest.mark.parametrize("format", sorted(RUNTIMES))
def test_exported_classifier_runs_in_its_runtime(backbone, spectrograms, tmp_path, format):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("exports run under KERAS_BACKEND=tensorflow (see the module docstring)")
    from matpac_keras.audio_classifier import MatpacAudioClassifier

    keras.utils.set_random_seed(0)
    classifier = MatpacAudioClassifier(backbone, num_classes=7, pooling="freq_mean", head_norm=True)
    norm = classifier.head_norm
    norm.moving_variance.assign(np.linspace(0.5, 2, norm.moving_variance.shape[0]))
    suffix, run = RUNTIMES[format]
    path = str(tmp_path / f"classifier{suffix}")
    classifier.export(path, format=format, verbose=False)
    for x in spectrograms:
        expected = keras.ops.convert_to_numpy(classifier(x))
        out = run(path, x)
        assert out.shape == expected.shape == (len(x), 7)
        assert relative_error(out, expected) < 1e-4
