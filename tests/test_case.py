"""Shared checks of layers, backbones and tasks, in the manner of keras-hub's `TestCase`.

Each `run_*` helper asserts one contract that every model of its kind keeps, so a test file
calls it with its own class and small inputs:

    run_layer_test      config round trip, a symbolic call (KerasTensor in, shape out) that
                        agrees with the eager call, and the same output from a rebuilt clone
    run_precision_test  under mixed_bfloat16 and mixed_float16: float32 weights, outputs in
                        the compute dtype, finite, and close to the float32 output
    run_backbone_test   output shape, inputs of several lengths, and `.keras` and preset
                        round trips that give the same outputs
    run_task_test       `fit` for one step (finite loss that changes the weights) and `predict`
    run_export_test     `export(format="tf_saved_model")` served back (TensorFlow backend only)
"""

import keras
import numpy as np
import pytest

PRECISIONS = ("mixed_bfloat16", "mixed_float16")


def _numpy(x):
    return keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))


def _shape_of(tree):
    return tuple(tree.shape) if hasattr(tree, "shape") else tree


def run_layer_test(cls, init_kwargs: dict, input_data, expected_output_shape, atol=1e-6):
    """A layer's config round trips; its symbolic output shape is the eager one; a clone
    rebuilt from its config and given its weights computes the same output."""
    layer = cls(**init_kwargs)
    output = layer(input_data)
    assert tuple(output.shape) == tuple(expected_output_shape)
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    symbolic = clone(keras.KerasTensor((None, *input_data.shape[1:]), dtype="float32"))
    assert tuple(symbolic.shape)[1:] == tuple(expected_output_shape)[1:]
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_numpy(clone(input_data)), _numpy(output), atol=atol)
    return layer


def run_precision_test(cls, init_kwargs: dict, input_data, rtol=0.1):
    """Under each mixed policy: float32 weights, outputs in the compute dtype, finite, and
    within `rtol` (relative to the output's largest value) of the float32 model's output with
    the same weights (bfloat16 keeps 8 bits of mantissa, float16 11)."""
    reference = cls(**init_kwargs)
    expected = _numpy(reference(input_data))
    for policy in PRECISIONS:
        model = cls(**{**init_kwargs, "dtype": policy})
        output = model(input_data)
        compute = keras.dtype_policies.get(policy).compute_dtype
        assert keras.backend.standardize_dtype(output.dtype) == compute, policy
        assert all(w.dtype == "float32" for w in model.weights), policy
        model.set_weights(reference.get_weights())
        got = _numpy(model(input_data))
        assert np.isfinite(got).all(), policy
        error = np.abs(got - expected).max() / np.abs(expected).max()
        assert error < rtol, f"{policy}: relative error {error:.3g}"


def run_backbone_test(
    cls, init_kwargs: dict, input_data, expected_output_shape, variable_length_inputs, tmp_path
):
    """A backbone: its output shape, inputs of other lengths (each shape as the backbone says),
    and `.keras` and keras-hub preset round trips giving the same outputs (with the
    backbone class found by `keras_hub.models.Backbone.from_preset`)."""
    import keras_hub

    backbone = run_layer_test(cls, init_kwargs, input_data, expected_output_shape)
    for inputs in variable_length_inputs:
        output = backbone(inputs)
        assert tuple(output.shape) == tuple(backbone.compute_output_shape(inputs.shape))
    expected = _numpy(backbone(input_data))
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is cls
    np.testing.assert_array_equal(_numpy(restored(input_data)), expected)
    preset = tmp_path / "preset"
    backbone.save_to_preset(preset)
    loaded = keras_hub.models.Backbone.from_preset(str(preset))
    assert type(loaded) is cls
    np.testing.assert_array_equal(_numpy(loaded(input_data)), expected)
    return backbone


def run_task_test(
    task, train_data, predict_data=None, expected_prediction_shape=None, steps: int = 1
):
    """`steps` `fit` steps on `train_data` ((x, y) or x) give a finite loss and move the
    trainable weights; `predict` (when `predict_data` is given) has the expected shape."""
    before = [_numpy(w) for w in task.trainable_weights]
    x, y = train_data if isinstance(train_data, tuple) else (train_data, None)
    history = task.fit(x, y, batch_size=len(x), epochs=steps, verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), loss
    after = [_numpy(w) for w in task.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    if predict_data is not None:
        prediction = task.predict(predict_data, batch_size=len(predict_data), verbose=0)
        assert _shape_of(prediction) == tuple(expected_prediction_shape)
    return history


def run_export_test(model, input_data, tmp_path, atol=1e-5):
    """`model.export(format="tf_saved_model")` reloaded with TensorFlow serves the model's own
    outputs (TensorFlow backend only: elsewhere it skips, as Keras exports there)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf_saved_model export runs under KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    path = str(tmp_path / "exported")
    model.export(path, format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(path)  # kept: its functions need the object alive
    served = loaded.serve(tf.constant(input_data))
    np.testing.assert_allclose(_numpy(served), _numpy(model(input_data)), atol=atol)
