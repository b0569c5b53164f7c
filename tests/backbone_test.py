"""The encoder: fixture parity through the NumPy reference, shapes, short inputs, bad input."""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import BACKBONE_VARIANTS, MatpacBackbone
from matpac_keras.convert import model_from_state_dict
from tests import numpy_reference as ref
from tests.conftest import FIXTURE_HEADS, relative_error
from tests.test_case import run_backbone_test, run_export_test, run_precision_test


@pytest.fixture(scope="module")
def backbone(encoder_only_state):
    return model_from_state_dict(encoder_only_state, num_heads=FIXTURE_HEADS["num_heads"])


def _numpy_encoder(state, spectrogram, depth=3, heads=4):
    tokens = ref.patch_embed(
        spectrogram.astype(np.float64),
        state["patch_embed.proj.weight"],
        state["patch_embed.proj.bias"],
    )
    n_time = tokens.shape[1] // 5
    pos = (
        state["pos_embed"][0, 1:]
        .reshape(5, -1, tokens.shape[-1])[:, :n_time]
        .reshape(-1, tokens.shape[-1])
    )
    x = np.concatenate(
        [np.broadcast_to(state["cls_token"], (len(tokens), 1, tokens.shape[-1])), tokens + pos], 1
    )
    for i in range(depth):
        x = ref.block(x, state, f"student_encoder.blocks.{i}.", heads)
    return ref.layer_norm(
        x, state["student_encoder.norm.weight"], state["student_encoder.norm.bias"]
    )


@pytest.mark.parametrize("frames", [128, 80, 16])
def test_encoder_matches_numpy_reference(backbone, encoder_only_state, fixture_arrays, frames):
    source = fixture_arrays("train_step")["source"][:, :, :frames]
    ours = keras.ops.convert_to_numpy(backbone(source))
    assert ours.shape == (3, 1 + 5 * (frames // 16), 128)
    assert relative_error(ours, _numpy_encoder(encoder_only_state, source)) < 1e-5


def test_return_layers(backbone, fixture_arrays):
    source = fixture_arrays("train_step")["source"][:1]
    final, layers = backbone(source, return_layers=True)
    assert len(layers) == 3
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layers[-1]), keras.ops.convert_to_numpy(final)
    )


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 64, 128), "80 mel bins"),
        ((2, 80, 8), "8 frames"),
        ((2, 80, 144), "144 frames"),
        ((80, 128), "frames"),
    ],
)
def test_bad_shapes_are_named(backbone, shape, message):
    with pytest.raises(ValueError, match=message):
        backbone(np.zeros(shape, "float32"))


def test_variants_and_config_round_trip():
    base = MatpacBackbone.from_variant("base")
    assert (base.embed_dim, base.depth, base.num_heads, base.max_frames) == (768, 12, 12, 608)
    assert set(BACKBONE_VARIANTS) >= {"tiny", "small", "base"}
    with pytest.raises(ValueError, match="unknown variant"):
        MatpacBackbone.from_variant("huge")
    tiny = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    assert MatpacBackbone.from_config(tiny.get_config()).get_config() == tiny.get_config()


def test_save_and_load_keeps_outputs(backbone, tmp_path, fixture_arrays):
    from matpac_keras.saving import load_backbone

    path = tmp_path / "backbone.keras"
    backbone.save(path)
    loaded = load_backbone(path)
    source = fixture_arrays("train_step")["source"]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(source)), keras.ops.convert_to_numpy(backbone(source))
    )


TINY = dict(embed_dim=32, depth=1, num_heads=2, max_frames=64)


def _logmel(frames, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, 80, frames)).astype("float32")


def test_backbone_contract(tmp_path):
    keras.utils.set_random_seed(0)
    run_backbone_test(
        MatpacBackbone,
        TINY,
        _logmel(64),
        expected_output_shape=(2, 1 + 5 * 4, 32),
        variable_length_inputs=[_logmel(16, 1), _logmel(48, 3)],
        tmp_path=tmp_path,
    )


def test_stored_positions_backbone_contract(tmp_path):
    keras.utils.set_random_seed(0)
    run_backbone_test(
        MatpacBackbone,
        {**TINY, "stored_positions": True},
        _logmel(64),
        expected_output_shape=(2, 1 + 5 * 4, 32),
        variable_length_inputs=[_logmel(32, 1)],
        tmp_path=tmp_path,
    )


def test_backbone_mixed_precision():
    keras.utils.set_random_seed(0)
    run_precision_test(MatpacBackbone, TINY, _logmel(64))


def test_backbone_export(tmp_path):
    keras.utils.set_random_seed(0)
    run_export_test(MatpacBackbone(**TINY), _logmel(48), tmp_path)
