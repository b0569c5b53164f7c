"""K masked views per crop and the mask shapes in the training step (issue 22): one view is
today's step (the official draw and step), K views share one teacher pass over the whole crop
and average their losses (against a per-view computation in NumPy)."""

import pathlib

import keras
import numpy as np
import pytest

from matpac_keras.config_file import load_config
from matpac_keras.errors import InputError
from matpac_keras.optimizers import AdamW
from matpac_keras.training.experiment import check_config
from tests import numpy_reference as ref
from tests.pretrainer_tiny import numpy_values, tiny_batch, tiny_pretrainer

DEMO_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs/demo.py"
VIEWS = 3
VISIBLE = 6  # of the tiny grid's 20 tokens


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x).astype("float64")


def _view_masks(seed: int = 0, batch: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([[rng.permutation(20) for _ in range(VIEWS)] for _ in range(batch)]).astype(
        "int32"
    )


def test_one_view_draws_todays_mask_and_takes_todays_step():
    """K = 1, random: the mask is `argsort` of the uniform noise keyed by (seed, step) (today's
    draw, recomputed here), and a step that draws it equals a step given it, to 1e-6. (The
    given-mask step is the official step: pretrainer_train_step_test.py's fixture test.)"""
    drawing, given = tiny_pretrainer(seed=4), tiny_pretrainer(seed=4)
    assert drawing.num_masked_views == 1 and drawing.mask_shape == "random"
    source = tiny_batch(seed=4)
    generator = keras.random.SeedGenerator(4)
    generator.state.assign(np.array([_np(drawing.seed_generator.state)[0], 0], "int64"))
    noise = keras.random.uniform((4, 20), seed=generator)
    ids = np.argsort(_np(noise), axis=-1).astype("int32")
    np.testing.assert_array_equal(_np(drawing.draw_mask(source)), ids)
    logs = []
    for model, batch in ((drawing, source), (given, {"source": source, "ids_shuffle": ids})):
        model.compile(optimizer=AdamW(learning_rate=1e-3))
        logs.append(model.train_on_batch(batch, return_dict=True))
    for key in ("loss", "loss_cls", "loss_pred", "grad_norm"):
        assert logs[0][key] == pytest.approx(logs[1][key], rel=1e-6), key
    for variable, a, b in zip(
        drawing.weights, numpy_values(drawing.weights), numpy_values(given.weights), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=variable.path)


def _per_view_losses(model, source, ids, step: int) -> tuple:
    """Each view on its own, with the teacher's outputs on the whole crop, computed once:
    the layers run per view, the gathers, teacher probabilities and losses in NumPy."""
    tokens = model.backbone.embed_patches(source)
    z_all = _np(model.teacher_encoder(model.backbone.prepend_cls(tokens)))[:, 1:]
    logits = _np(model.teacher_head(z_all.astype("float32")))
    tau = 0.04 + 0.03 * step / 10  # FAST_SCHEDULES' tau_t ramp
    probs = ref.softmax((logits - _np(model.center)) / tau)
    rows = np.arange(len(source))[:, None]
    losses, view_probs = [], []
    for k in range(ids.shape[1]):
        view = ids[:, k]
        visible = _np(tokens)[rows, view[:, :VISIBLE]].astype("float32")
        z_v = model.backbone.encoder(model.backbone.prepend_cls(visible))
        prediction = model.predictor(z_v, view)[:, 0]
        student = _np(model.student_head(prediction))
        target = z_all[rows, view[:, VISIBLE:]]
        cosine = np.sum(ref.l2_normalize(_np(prediction)) * ref.l2_normalize(target), -1)
        loss_pred = 2 - 2 * cosine
        p = probs[rows, view[:, VISIBLE:]]
        loss_cls = -np.sum(p * ref.log_softmax(student / 0.1), axis=-1)
        losses.append(0.5 * loss_cls.mean() + 0.5 * loss_pred.mean())
        view_probs.append(p)
    return losses, np.stack(view_probs, axis=1), probs


@pytest.mark.parametrize("center_on", ["probabilities", "logits"])
def test_views_loss_is_the_mean_over_views_with_shared_teacher_targets(center_on):
    model = tiny_pretrainer(num_masked_views=VIEWS, center_on=center_on)
    center = np.random.default_rng(3).normal(0, 0.5, (1, 1, 32)).astype("float32")
    model.center.assign(center)
    model.step.assign(3)
    source, ids = tiny_batch(), _view_masks()
    outputs = model.forward_with_mask(source, ids, step=3)
    losses, view_probs, crop_probs = _per_view_losses(model, source, ids, 3)
    assert float(_np(outputs["loss"])) == pytest.approx(np.mean(losses), rel=1e-5)
    assert tuple(outputs["z_m"].shape) == (4 * VIEWS, 14, 32)  # row b * K + k
    np.testing.assert_allclose(
        _np(outputs["teacher_probs"]).reshape(view_probs.shape), view_probs, atol=1e-6
    )
    np.testing.assert_allclose(_np(outputs["crop_teacher_probs"]), crop_probs, atol=1e-6)
    # The step: the same loss; the centre moves with the teacher's output on every crop token.
    crop_output = _np(
        outputs["crop_teacher_probs" if center_on == "probabilities" else "crop_teacher_logits"]
    )
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    logs = model.train_on_batch({"source": source, "ids_shuffle": ids}, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    expected = 0.9 * center + 0.1 * crop_output.reshape(-1, 32).mean(axis=0)
    np.testing.assert_allclose(_np(model.center), expected, atol=1e-6)
    assert int(_np(model.step)) == 4


@pytest.mark.parametrize("mask_shape", ["random", "inverse_block"])
def test_drawn_view_masks_train_and_resume_the_same(mask_shape):
    """Drawn masks [B, K, tokens]: permutations, the views differ, the same at the same step
    (a resumed run draws them again), others at the next; `fit` runs the compiled step."""
    model = tiny_pretrainer(num_masked_views=VIEWS, mask_shape=mask_shape)
    source = tiny_batch(seed=2)
    ids = _np(model.draw_mask(source)).astype(int)
    assert ids.shape == (4, VIEWS, 20)
    np.testing.assert_array_equal(np.sort(ids, axis=-1), np.broadcast_to(np.arange(20), ids.shape))
    visible = [{frozenset(ids[b, k, :VISIBLE]) for k in range(VIEWS)} for b in range(4)]
    assert all(len(sets) > 1 for sets in visible)
    np.testing.assert_array_equal(_np(model.draw_mask(source)), ids)
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    history = model.fit(tiny_batch(batch_size=8, seed=3), batch_size=4, epochs=1, verbose=0)
    assert int(_np(model.step)) == 2 and np.isfinite(history.history["loss"]).all()
    model.step.assign(0)
    np.testing.assert_array_equal(_np(model.draw_mask(source)), ids)
    model.step.assign(1)
    assert not np.array_equal(_np(model.draw_mask(source)), ids)


def test_views_and_mask_shape_config_and_bad_arguments():
    model = tiny_pretrainer(num_masked_views=4, mask_shape="inverse_block")
    config = model.get_config()
    assert (config["num_masked_views"], config["mask_shape"]) == (4, "inverse_block")
    assert type(model).from_config(config).get_config() == config
    for bad, match in (
        (dict(num_masked_views=0), "num_masked_views must be at least 1"),
        (dict(num_masked_views=1.5), "num_masked_views must be an integer"),
        (dict(mask_shape="block"), "mask_shape must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            tiny_pretrainer(**bad)
    with pytest.raises(ValueError, match=r"ids_shuffle is \[batch, views, tokens\]"):
        model.forward_with_mask(tiny_batch(), _view_masks()[:, 0])
    config = load_config(DEMO_CONFIG, "tiny")
    for field, value, match in (
        ("num_masked_views", 0, r"config.model.num_masked_views=0: must be in \[1, 64\]"),
        ("mask_shape", "blocks", "config.model.mask_shape must be one of"),
    ):
        bad = load_config(DEMO_CONFIG, "tiny")
        bad.model[field] = value
        with pytest.raises(InputError, match=match):
            check_config(bad)
    check_config(config)
