"""The MATPAC training step (SPEC section 4) against the official step of the fixtures, and the
parts the fixture cannot see (EMA of tensors equal at the start, centre options, MATPAC++)."""

import re

import keras
import numpy as np
import pytest

from matpac_keras.convert import model_from_state_dict
from matpac_keras.losses import center_update
from matpac_keras.optimizers import AdamW
from matpac_keras.pretrainer import EMA_ORDERS, MatpacPretrainer
from matpac_keras.train_steps.common import collapse_monitors, teacher_ema_updates
from tests.conftest import FIXTURE_HEADS, FIXTURE_STEP
from tests.pretrainer_tiny import (
    FAST_SCHEDULES,
    numpy_values,
    tiny_batch,
    tiny_masks,
    tiny_pretrainer,
)

# The fixture run's schedules (fixtures/config.json): all over 10 steps.
FIXTURE_SCHEDULES = FAST_SCHEDULES
LOG_KEYS = {
    "loss",
    "loss_cls",
    "loss_pred",
    "teacher_temp",
    "lr",
    "grad_norm",
    "z_hat_m_std",
    "z_m_std",
    "teacher_perplexity",
    "teacher_classes",
    "argmax_agreement",
    "center_norm",
}


def _to_numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _state_after(step: dict) -> dict:
    """train_step.npz's weights after the step, as an official training state_dict."""

    def part(prefix):
        return {k.removeprefix(prefix): v for k, v in step.items() if k.startswith(prefix)}

    state = part("student_after/")
    state["_ema"] = part("teacher_after/")
    state["_cls_head_ema"] = part("head_teacher_after/")
    state["cls_head_loss.center"] = step["center_after"]
    return state


def _same_variable(a, b) -> bool:
    def strip(path):
        return re.sub(r"_\d+(?=/|$)", "", path)  # "matpac_pretrainer_1/..." -> "matpac_pretrainer/"

    return strip(a.path) == strip(b.path) and tuple(a.shape) == tuple(b.shape)


def test_one_step_reproduces_official_step(train_full_state, fixture_arrays):
    step = fixture_arrays("train_step")
    model = model_from_state_dict(train_full_state, **FIXTURE_HEADS, **FIXTURE_SCHEDULES)
    model.step.assign(FIXTURE_STEP)
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    batch = {"source": step["source"], "ids_shuffle": step["ids_shuffle"].astype("int32")}
    logs = model.train_on_batch(batch, return_dict=True)

    expected = model_from_state_dict(_state_after(step), **FIXTURE_HEADS)
    compared = 0
    for ours, theirs in zip(model.weights, expected.weights, strict=True):
        assert _same_variable(ours, theirs), (ours.path, theirs.path)
        if ours is model.step:
            continue
        error = np.abs(_to_numpy(ours) - _to_numpy(theirs)).max()
        assert error < 1e-5, f"{ours.path}: {error:.2e}"
        compared += 1
    assert compared == len(model.weights) - 1  # students, both teachers and the centre
    assert int(_to_numpy(model.step)) == FIXTURE_STEP + 1
    assert set(logs) == LOG_KEYS
    assert logs["loss"] == pytest.approx(float(step["loss"]), rel=1e-5)
    assert logs["loss_cls"] == pytest.approx(float(step["loss_cls"].mean()), rel=1e-5)
    assert logs["loss_pred"] == pytest.approx(float(step["loss_pred"].mean()), rel=1e-5)
    assert logs["grad_norm"] == pytest.approx(float(step["grad_norm"]), rel=1e-5)
    assert logs["teacher_temp"] == pytest.approx(float(step["teacher_temp"]), rel=1e-6)
    assert logs["lr"] == pytest.approx(1e-3, rel=1e-6)
    center_norm = np.linalg.norm(step["center_after"].astype("float64"))
    assert logs["center_norm"] == pytest.approx(center_norm, rel=1e-5)
    assert abs(center_norm - np.linalg.norm(step["center_before"])) > 1e-2  # the update shows


def _teacher_variables(model) -> list:
    encoder, head = model.teacher_pairs()
    return [t for _, t in encoder + head]


@pytest.mark.parametrize("ema_order", EMA_ORDERS)
def test_teacher_ema_formula_on_every_tensor(ema_order):
    """The fixture's blind spot: biases, LayerNorms, g and v start equal in teacher and student.
    Here every teacher tensor differs from its student before the step."""
    model = tiny_pretrainer(ema_order=ema_order)
    rng = np.random.default_rng(1)
    for teacher in _teacher_variables(model):
        teacher.assign(_to_numpy(teacher) + rng.normal(0, 0.1, teacher.shape).astype("float32"))
    model.step.assign(5)
    encoder, head = model.teacher_pairs()
    students_before = numpy_values([s for s, _ in encoder + head])
    teachers_before = numpy_values([t for _, t in encoder + head])
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    model.train_on_batch(tiny_batch())

    students_after = numpy_values([s for s, _ in encoder + head])
    students = students_before if ema_order == "before_update" else students_after
    decays = [0.9 + 0.09 * 0.5] * len(encoder) + [0.8 + 0.2 * 0.5] * len(head)
    for (_, teacher), t0, s, decay in zip(
        encoder + head, teachers_before, students, decays, strict=True
    ):
        expected = decay * t0.astype("float64") + (1 - decay) * s.astype("float64")
        error = np.abs(_to_numpy(teacher) - expected).max()
        assert error < 1e-6, f"{teacher.path}: {error:.2e}"


def test_no_teacher_ema_at_step_zero():
    model = tiny_pretrainer()
    rng = np.random.default_rng(2)
    for teacher in _teacher_variables(model):
        teacher.assign(_to_numpy(teacher) + rng.normal(0, 0.1, teacher.shape).astype("float32"))
    before = numpy_values(_teacher_variables(model))
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    model.train_on_batch(tiny_batch())
    for teacher, value in zip(_teacher_variables(model), before, strict=True):
        np.testing.assert_array_equal(_to_numpy(teacher), value, err_msg=teacher.path)
    assert int(_to_numpy(model.step)) == 1


def test_teachers_start_as_copies_of_the_students():
    model = tiny_pretrainer(teacher_init="copy")
    for pairs in model.teacher_pairs():
        for student, teacher in pairs:
            np.testing.assert_array_equal(_to_numpy(teacher), _to_numpy(student))
            assert teacher.dtype == "float32" and not teacher.trainable
    # The encoder EMA covers the trunk only; the head EMA covers g and v separately.
    encoder, head = model.teacher_pairs()
    assert len(encoder) == len(model.backbone.encoder.weights)
    last_layer = model.student_head.last_layer
    assert {id(last_layer.g), id(last_layer.v)} <= {id(s) for s, _ in head}


@pytest.mark.parametrize("center_on", ["probabilities", "logits"])
def test_centre_update_from_this_steps_teacher(center_on):
    model = tiny_pretrainer(center_on=center_on)
    center = np.random.default_rng(3).normal(0, 0.5, (1, 1, 32)).astype("float32")
    model.center.assign(center)
    model.step.assign(3)
    source, ids = tiny_batch(), tiny_masks()
    outputs = model.forward_with_mask(
        source, ids, step=3
    )  # no side effects: the same tensors as the step
    key = "teacher_probs" if center_on == "probabilities" else "teacher_logits"
    teacher_output = _to_numpy(outputs[key]).astype("float64")
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    model.train_on_batch({"source": source, "ids_shuffle": ids})
    expected = 0.9 * center + 0.1 * teacher_output.reshape(-1, 32).mean(axis=0)
    np.testing.assert_allclose(_to_numpy(model.center), expected, atol=1e-6)


def _head_values(model, index: int) -> list:
    head = model.predictor.output_heads[index]
    return numpy_values([head.kernel, head.bias])


@pytest.mark.parametrize("step, soft", [(0, True), (40, False)])
def test_matpac_plusplus_step(step, soft):
    """Soft assignment (T > 1e-4): every head learns. Winner-takes-all (T = 0.1 * 0.5**40):
    a head that is never the argmin gets no gradient, so only weight decay moves it, even when
    tied with the argmin head."""
    model = tiny_pretrainer(num_prediction_heads=5, mcl_temperature=(0.1, 0.5))
    heads = model.predictor.output_heads
    rng = np.random.default_rng(6)
    for head in heads[:4]:  # distinct heads (a shared initializer would make them equal)
        head.set_weights([rng.normal(0, 0.2, v.shape).astype("float32") for v in head.weights])
    heads[4].set_weights(heads[3].get_weights())  # tied with head 3: never the first argmin
    model.step.assign(step)
    source, ids = tiny_batch(), tiny_masks()
    outputs = model.forward_with_mask(source, ids, step=step)
    z_m = _to_numpy(outputs["z_m"])
    predictions = _to_numpy(outputs["predictions"])  # [B, heads, M, D]

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    per_head = 2 - 2 * np.sum(unit(predictions) * unit(z_m)[:, None], axis=-1)
    winners = set(np.unique(per_head.argmin(axis=1)).tolist())
    assert 4 not in winners and winners
    before = [_head_values(model, i) for i in range(5)]
    model.compile(optimizer=AdamW(learning_rate=1e-3, weight_decay=0.05))
    logs = model.train_on_batch({"source": source, "ids_shuffle": ids}, return_dict=True)
    assert logs["loss"] == pytest.approx(float(_to_numpy(outputs["loss"])), rel=1e-5)

    decay_only = 1 - 1e-3 * 0.05
    for i in range(5):
        for after, initial in zip(_head_values(model, i), before[i], strict=True):
            moved = np.abs(after - initial * decay_only).max()
            if soft or i in winners:
                assert moved > 1e-4, f"head {i} got no gradient"
            else:
                assert moved < 1e-7, f"head {i} moved by {moved:.2e} without winning a token"


def test_fit_with_spectrograms_only_is_seeded_and_deterministic():
    """`fit` on log-mel arrays alone; masks from the model's seeded generator: the same seed
    gives the same run, another seed another run. One model is rewound (weights, optimizer,
    mask generator) between the runs so the step is compiled once."""
    data = tiny_batch(batch_size=4, seed=5)
    model = tiny_pretrainer(seed=7)
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    start = numpy_values(model.weights)
    results = []
    for seed in (7, 7, 8):
        model.set_weights(start)
        model.seed_generator.state.assign(np.array([seed, 0]))
        if model.optimizer.built:  # iterations and moments back to 0 (not the learning rate)
            for variable in model.optimizer.variables:
                if variable is not model.optimizer._learning_rate:
                    variable.assign(np.zeros(variable.shape, variable.dtype))
        history = model.fit(data, batch_size=2, epochs=1, shuffle=False, verbose=0)
        assert set(history.history) == LOG_KEYS
        assert int(_to_numpy(model.step)) == 2
        assert int(_to_numpy(model.optimizer.iterations)) == 2
        results.append(numpy_values(model.trainable_variables))
    for a, b in zip(results[0], results[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(results[0], results[2], strict=True))


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    """Weights, teachers, centre, step counter and optimizer state survive a `.keras` file, and
    the masks depend on (seed, step) only: 2 + 2 steps equal 4 steps."""
    data = tiny_batch(batch_size=4, seed=6)
    model = tiny_pretrainer(seed=9)
    start = numpy_values(model.weights)
    model.compile(optimizer=AdamW(learning_rate=1e-3))
    model.fit(data, batch_size=2, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "half.keras")
    model.fit(data, batch_size=2, epochs=1, shuffle=False, verbose=0)
    uninterrupted = numpy_values(model.weights)

    resumed = keras.saving.load_model(tmp_path / "half.keras")
    assert int(_to_numpy(resumed.optimizer.iterations)) == 2
    resumed.fit(data, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert int(_to_numpy(resumed.step)) == 4
    for variable, value, expected, initial in zip(
        resumed.weights, numpy_values(resumed.weights), uninterrupted, start, strict=True
    ):
        np.testing.assert_allclose(value, expected, atol=1e-7, err_msg=variable.path)
        if variable.trainable:
            assert not np.array_equal(value, initial), variable.path


def test_forward_and_call_have_no_side_effects():
    model = tiny_pretrainer()
    model.step.assign(5)
    tracked = [model.center, model.step, *_teacher_variables(model)]
    before = numpy_values(tracked)
    model.forward_with_mask(tiny_batch(), tiny_masks(), step=model.step)
    model(tiny_batch())
    for variable, value in zip(tracked, before, strict=True):
        np.testing.assert_array_equal(_to_numpy(variable), value, err_msg=variable.path)


def test_config_round_trip_and_bad_arguments():
    model = tiny_pretrainer(center_on="logits", ema_order="after_update", seed=3)
    config = model.get_config()
    for key, value in dict(
        center_momentum=0.9,
        center_on="logits",
        encoder_ema=(0.9, 0.99),
        head_ema=(0.8, 1.0),
        total_steps=10,
        ema_order="after_update",
        seed=3,
    ).items():
        assert config[key] == value, key
    assert MatpacPretrainer.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="center_on"):
        tiny_pretrainer(center_on="logit")
    with pytest.raises(ValueError, match="ema_order"):
        tiny_pretrainer(ema_order="later")
    with pytest.raises(ValueError, match="total_steps"):
        tiny_pretrainer(total_steps=0)
    with pytest.raises(ValueError, match="encoder_ema takes 2 numbers"):
        tiny_pretrainer(encoder_ema=(0.99, 0.999, 10))
    with pytest.raises(ValueError, match="dtype policy"):
        MatpacPretrainer(model.backbone, dtype="mixed_bfloat16")
    with pytest.raises(ValueError, match="ids_shuffle"):
        model.unpack_batch({"source": tiny_batch(), "mask": tiny_masks()})


def test_teacher_ema_and_centre_formulas():
    rng = np.random.default_rng(4)
    students = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=5).astype("float32")]
    teachers = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=5).astype("float32")]
    for new, s, t in zip(
        teacher_ema_updates(students, teachers, 0.7), students, teachers, strict=True
    ):
        np.testing.assert_allclose(_to_numpy(new), 0.7 * t + 0.3 * s, atol=1e-6)
    output = rng.random((2, 3, 6)).astype("float32")
    center = rng.normal(size=(1, 1, 6)).astype("float32")
    expected = 0.9 * center + 0.1 * output.mean(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(_to_numpy(center_update(center, output, 0.9)), expected, atol=1e-6)


def test_collapse_monitors_against_numpy():
    rng = np.random.default_rng(5)
    z_hat, z = rng.normal(size=(2, 7, 8)), rng.normal(size=(2, 7, 8)) + 3.0
    logits = rng.normal(size=(2, 7, 6))
    teacher_logits = rng.normal(size=(2, 7, 6)) * 3
    teacher_logits[0, 0:3] = logits[0, 0:3] * 10  # three tokens where the argmaxes agree
    teacher_logits[..., 5] = -50.0  # class 5 is never the argmax and has ~0 probability
    logits[0, 0:3, 5] = -50.0
    probs = np.exp(teacher_logits) / np.exp(teacher_logits).sum(-1, keepdims=True)
    ours = {
        k: float(_to_numpy(v))
        for k, v in collapse_monitors(
            *(x.astype("float32") for x in (z_hat, z, logits, probs))
        ).items()
    }

    def channel_std(x):
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        return np.sqrt(x.reshape(-1, x.shape[-1]).var(axis=0, ddof=1) + 1e-6).mean()

    mean = probs.reshape(-1, 6).mean(axis=0)
    teacher_argmax, student_argmax = probs.argmax(-1).ravel(), logits.argmax(-1).ravel()
    expected = {
        "z_hat_m_std": channel_std(z_hat),
        "z_m_std": channel_std(z),
        "teacher_perplexity": np.exp(-(mean * np.log(mean)).sum()),
        "teacher_classes": len(np.unique(teacher_argmax)),
        "argmax_agreement": (teacher_argmax == student_argmax).mean(),
    }
    assert expected["teacher_classes"] < 6 and expected["argmax_agreement"] >= 3 / 14
    assert ours == pytest.approx(expected, rel=1e-5)
