"""Training checkpoints: complete (a restored model trains on identically), atomic, pruned,
refusing non-finite state, and strict about the architecture they are restored into."""

import keras
import numpy as np
import pytest

from matpac_keras.optimizers import AdamW
from matpac_keras.training import checkpoint
from tests.pretrainer_tiny import numpy_values, tiny_batch, tiny_pretrainer


def _compiled(seed: int, **kwargs):
    model = tiny_pretrainer(seed=seed, **kwargs)
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    return model


def _state(model) -> list[np.ndarray]:
    return numpy_values(model.variables) + numpy_values(model.optimizer.variables)


def test_restored_model_continues_exactly(tmp_path):
    data = tiny_batch(8, seed=1)
    trained = _compiled(seed=0)
    trained.fit(data, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 2 steps
    path = checkpoint.save_checkpoint(tmp_path, 2, trained, {"note": "x"})
    assert path == tmp_path / "checkpoints" / "ckpt-00000002.npz"

    other = _compiled(seed=7)  # other weights, masks and (unbuilt) optimizer state
    metadata = checkpoint.restore_checkpoint(path, other)
    assert metadata["step"] == 2 and metadata["note"] == "x"
    for restored, saved in zip(_state(other), _state(trained), strict=True):
        np.testing.assert_array_equal(restored, saved)
    # Everything a step depends on was restored: the next two steps agree exactly (the masks
    # come from the restored seed generator, the EMA and tau_t from the restored step).
    more = tiny_batch(8, seed=2)
    trained.fit(more, batch_size=4, epochs=1, shuffle=False, verbose=0)
    other.fit(more, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(_state(other), _state(trained), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(keras.ops.convert_to_numpy(other.step)) == 4


def test_checkpoint_holds_teachers_centre_step_and_seed(tmp_path):
    model = _compiled(seed=0)
    model.fit(tiny_batch(4), batch_size=4, epochs=1, verbose=0)
    _, arrays = checkpoint.read_checkpoint(checkpoint.save_checkpoint(tmp_path, 1, model, {}))
    saved = arrays["model"]
    assert any("teacher_encoder" in n for n in saved)
    assert any("teacher_head" in n for n in saved)
    assert any(n.endswith("seed_generator_state") for n in saved)
    np.testing.assert_array_equal(
        saved[model.center.path], keras.ops.convert_to_numpy(model.center)
    )
    assert int(saved[model.step.path]) == 1
    assert int(arrays["optimizer"]["adamw/iteration"]) == 1


def test_keeps_the_newest_and_ignores_partial_files(tmp_path):
    model = _compiled(seed=0)
    for step in (5, 10, 15, 20):
        checkpoint.save_checkpoint(tmp_path, step, model, {}, keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [15, 20]
    partial = tmp_path / "checkpoints" / "ckpt-00000025.npz.tmp"
    partial.write_bytes(b"killed while writing")
    assert checkpoint.latest_checkpoint(tmp_path).name == "ckpt-00000020.npz"
    checkpoint.remove_partial_files(tmp_path)
    assert not partial.exists()
    assert checkpoint.latest_checkpoint(tmp_path / "elsewhere") is None


def test_refuses_non_finite_state_and_writes_nothing(tmp_path):
    model = _compiled(seed=0)
    checkpoint.save_checkpoint(tmp_path, 1, model, {})
    model.center.assign(np.full(model.center.shape, np.nan, "float32"))
    with pytest.raises(checkpoint.NonFiniteStateError, match="center"):
        checkpoint.save_checkpoint(tmp_path, 2, model, {})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-00000001.npz"]


def test_restore_names_the_file_and_the_mismatch(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path, 1, _compiled(seed=0), {})
    wider = _compiled(seed=0, num_classes=64)
    with pytest.raises(ValueError, match=r"ckpt-00000001\.npz: .*center has shape"):
        checkpoint.restore_checkpoint(path, wider)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="garbage.npz: not a readable checkpoint"):
        checkpoint.read_checkpoint(garbage)
