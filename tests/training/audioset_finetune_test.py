"""The AudioSet recipe's backbone widening (its runs: tests/evaluation/finetune_audioset_test)."""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.errors import InputError
from matpac_keras.training.audioset_finetune import with_max_frames

TINY = dict(embed_dim=32, depth=1, num_heads=2)


def test_a_shorter_position_grid_is_widened_with_the_same_weights():
    narrow = MatpacBackbone.from_variant("tiny", max_frames=32, **TINY)
    assert with_max_frames(narrow, 32) is narrow
    wide = with_max_frames(narrow, 64)
    assert (wide.max_frames, wide.embed_dim, wide.depth) == (64, 32, 1)
    for a, b in zip(narrow.get_weights(), wide.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    logmel = np.random.default_rng(0).standard_normal((2, 80, 32)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(wide(logmel)),
        keras.ops.convert_to_numpy(narrow(logmel)),
        atol=1e-6,
    )  # a 32-frame input sees the first columns of the wider grid: the same positions
    assert keras.ops.convert_to_numpy(wide(np.zeros((1, 80, 64), "float32"))).shape == (1, 21, 32)


def test_a_stored_position_table_cannot_be_widened():
    stored = MatpacBackbone.from_variant("tiny", max_frames=32, stored_positions=True, **TINY)
    with pytest.raises(InputError, match="stored table of 32 frames, shorter than"):
        with_max_frames(stored, 64)
