"""Official checkpoints: strict conversion and the fixture forward pass (train_step.npz)."""

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.convert import (
    CheckpointMismatchError,
    backbone_config,
    model_from_state_dict,
    pretrainer_config,
)
from matpac_keras.errors import InputError
from matpac_keras.pretrainer import MatpacPretrainer
from tests.conftest import FIXTURE_HEADS, FIXTURE_STEP, relative_error

FORWARD_KEYS = [
    "z_hat_m",
    "z_m",
    "student_logits",
    "teacher_probs",
    "loss_cls",
    "loss_pred",
    "loss",
]


def test_architecture_read_from_shapes(train_full_state):
    assert backbone_config(train_full_state) == dict(
        embed_dim=128,
        depth=3,
        num_heads=2,
        mlp_ratio=4.0,
        patch_size=16,
        num_mels=80,
        max_frames=128,
        stored_positions=False,
    )
    assert pretrainer_config(train_full_state, predictor_num_heads=4) == dict(
        predictor_dim=64,
        predictor_depth=2,
        predictor_heads=4,
        num_prediction_heads=1,
        head_hidden_dim=256,
        head_bottleneck_dim=256,
        num_classes=256,
    )


def test_encoder_only_gives_backbone_and_training_file_gives_pretrainer(
    encoder_only_state, train_full_state
):
    assert isinstance(model_from_state_dict(encoder_only_state), MatpacBackbone)
    assert isinstance(model_from_state_dict(train_full_state, **FIXTURE_HEADS), MatpacPretrainer)


def test_forward_pass_reproduces_official_step(fixture_pretrainer, fixture_arrays):
    step = fixture_arrays("train_step")
    out = fixture_pretrainer.forward_with_mask(
        step["source"], step["ids_shuffle"].astype("int32"), step=FIXTURE_STEP
    )
    assert float(keras.ops.convert_to_numpy(out["teacher_temperature"])) == pytest.approx(
        float(step["teacher_temp"]), abs=1e-7
    )
    for key in FORWARD_KEYS:
        ours = keras.ops.convert_to_numpy(out[key]).reshape(step[key].shape)
        assert relative_error(ours, step[key]) < 1e-4, key
    # Tighter than the tolerance on purpose: a tanh GELU or LayerNorm eps 1e-5 moves these ~4e-6.
    assert relative_error(keras.ops.convert_to_numpy(out["z_hat_m"]), step["z_hat_m"]) < 2e-6


def test_teachers_and_centre_are_loaded(fixture_pretrainer, train_full_state):
    teacher = fixture_pretrainer.teacher_encoder.blocks[1].fc1.kernel
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(teacher), train_full_state["_ema"]["blocks.1.mlp.fc1.weight"].T
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(fixture_pretrainer.teacher_head.last_layer.g),
        train_full_state["_cls_head_ema"]["last_layer.weight_g"][:, 0],
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(fixture_pretrainer.center),
        train_full_state["cls_head_loss.center"],
    )


def _copy(state):
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}


def test_missing_tensor_is_named(train_full_state):
    state = _copy(train_full_state)
    del state["student_encoder.blocks.1.attn.proj.bias"]
    with pytest.raises(CheckpointMismatchError, match="student_encoder.blocks.1.attn.proj.bias"):
        model_from_state_dict(state, **FIXTURE_HEADS)


def test_wrong_shape_is_named(encoder_only_state):
    state = _copy(encoder_only_state)
    state["student_encoder.blocks.2.mlp.fc2.weight"] = np.zeros((128, 256), "float32")
    with pytest.raises(CheckpointMismatchError, match=r"blocks.2.mlp.fc2.weight.*\(128, 256\)"):
        model_from_state_dict(state)


def test_unexpected_tensor_is_named(encoder_only_state):
    state = _copy(encoder_only_state)
    state["head.weight"] = np.zeros((527, 768), "float32")
    with pytest.raises(CheckpointMismatchError, match="'head.weight'"):
        model_from_state_dict(state)


def test_positions_other_than_the_sincos_grid_are_used_as_stored(encoder_only_state):
    """As the authors' code adds whatever `pos_embed` holds (cls row included), so does ours."""
    state = _copy(encoder_only_state)
    shift = np.random.default_rng(0).normal(0, 0.1, state["pos_embed"].shape).astype("float32")
    reference = model_from_state_dict(encoder_only_state, num_heads=4)
    state["pos_embed"] = state["pos_embed"] + shift
    model = model_from_state_dict(state, num_heads=4)
    assert model.stored_positions and not reference.stored_positions
    x = np.random.default_rng(1).normal(size=(2, 80, 96)).astype("float32")
    patches = keras.ops.convert_to_numpy(model.embed_patches(x))
    expected = keras.ops.convert_to_numpy(reference.embed_patches(x))
    grid = shift[0, 1:].reshape(5, 8, -1)[:, :6].reshape(30, -1)  # 96 frames: 6 of 8 columns
    np.testing.assert_allclose(patches, expected + grid[None], atol=1e-5)
    with_cls = keras.ops.convert_to_numpy(model.prepend_cls(keras.ops.zeros((1, 0, 128))))
    np.testing.assert_allclose(with_cls[0, 0], state["cls_token"][0, 0] + shift[0, 0], atol=1e-6)


def test_not_a_matpac_checkpoint():
    with pytest.raises(CheckpointMismatchError, match="not a MATPAC checkpoint"):
        model_from_state_dict({"conv.weight": np.zeros((3, 3))})


@pytest.mark.parametrize("prefix", ["mcl_heads.mcl_heads.", "mcl_heads."])
def test_matpac_plusplus_heads(train_full_state, fixture_pretrainer, fixture_arrays, prefix):
    rng = np.random.default_rng(0)
    state = _copy(train_full_state)
    for i in range(5):
        state[f"{prefix}{i}.weight"] = rng.normal(0, 0.1, (128, 64)).astype("float32")
        state[f"{prefix}{i}.bias"] = rng.normal(0, 0.1, 128).astype("float32")
    # Head 2 is the single-head model's output layer: its predictions must equal MATPAC's.
    state[f"{prefix}2.weight"] = state["decoder.decoder_pred.weight"]
    state[f"{prefix}2.bias"] = state["decoder.decoder_pred.bias"]
    model = model_from_state_dict(state, **FIXTURE_HEADS)
    assert model.num_prediction_heads == 5
    step = fixture_arrays("train_step")
    ids = step["ids_shuffle"].astype("int32")
    out = {
        k: keras.ops.convert_to_numpy(v)
        for k, v in model.forward_with_mask(step["source"], ids).items()
    }
    single = keras.ops.convert_to_numpy(
        fixture_pretrainer.forward_with_mask(step["source"], ids)["z_hat_m"]
    )
    np.testing.assert_allclose(out["predictions"][:, 2], single, atol=1e-5)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    per_head = 2 - 2 * np.sum(unit(out["predictions"]) * unit(out["z_m"])[:, None], -1)
    best = per_head.argmin(axis=1)  # [B, M]
    chosen = np.take_along_axis(out["predictions"], best[:, None, :, None], axis=1)[:, 0]
    np.testing.assert_allclose(out["z_hat_m"], chosen, atol=1e-6)
    weights = np.exp(-per_head / 0.1) / np.exp(-per_head / 0.1).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["loss_pred"], (weights * per_head).sum(axis=1), atol=1e-5)


def test_calling_the_pretrainer_returns_a_finite_loss(fixture_pretrainer, fixture_arrays):
    # Under torch a method named `forward` would shadow nn.Module.forward and break model(x).
    loss = fixture_pretrainer(fixture_arrays("train_step")["source"])
    assert np.isfinite(float(keras.ops.convert_to_numpy(loss)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_heads": -4}, "num_heads=-4: must be a positive divisor of the encoder width 128"),
        ({"num_heads": 0}, "num_heads=0: must be a positive divisor of the encoder width 128"),
        ({"num_heads": 3}, "num_heads=3: must be a positive divisor of the encoder width 128"),
        (
            {"num_heads": 4, "predictor_num_heads": -2},
            "predictor_num_heads=-2: must be a positive divisor of the predictor width 64",
        ),
        (
            {"num_heads": 4, "predictor_num_heads": 0},
            "predictor_num_heads=0: must be a positive divisor of the predictor width 64",
        ),
        ({"num_mels": 40}, "num_mels=40: must be a positive multiple of the patch size 16"),
        ({"num_mels": 0}, "num_mels=0: must be a positive multiple of the patch size 16"),
        ({"num_mels": 48}, "num_mels=48: 3 frequency patches do not divide the checkpoint's 40"),
        ({"num_mels": 160}, r"num_mels=160: .* not a grid of 10 frequency x 4 time .*num_mels=80"),
    ],
)
def test_bad_arguments_are_named(train_full_state, kwargs, message):
    # Before: num_heads=-4 built a model that could not run, num_heads=0 was ignored.
    with pytest.raises(InputError, match=message):
        model_from_state_dict(train_full_state, **kwargs)


def test_default_and_given_heads(train_full_state):
    assert backbone_config(train_full_state)["num_heads"] == 2  # width 128 / 64
    assert backbone_config(train_full_state, np.int64(8))["num_heads"] == 8
    assert pretrainer_config(train_full_state, 16)["predictor_heads"] == 16


# === The authors' classification heads (SPEC section 9; fixtures/heads/) ===

HEADS_TASKS = ("esc50", "openmic", "fsd50k", "mtg_genre")


@pytest.fixture(scope="module")
def heads_dir(fixtures_dir):
    return fixtures_dir / "heads"


@pytest.fixture(scope="module")
def heads_reference(heads_dir):
    with np.load(heads_dir / "heads.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


def _state(path):
    from matpac_keras.torch_checkpoint import find_state_dict, load_torch_checkpoint

    return find_state_dict(load_torch_checkpoint(path))


def _authors_strings(model, probabilities):
    return [[f"{name} ({p:.2f})" for name, p in row] for row in model.top_labels(probabilities)]


def _check_tags(model, waveforms, reference, key):
    logits = model.clip_logits(list(waveforms))
    probabilities = model.probabilities(logits, "softmax")
    np.testing.assert_allclose(probabilities, reference[f"{key}/probs"], atol=1e-5, rtol=0)
    top5 = np.argsort(-probabilities, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(top5, reference[f"{key}/top5"])
    assert _authors_strings(model, probabilities) == reference[f"{key}/labels"].tolist()


def test_audioset_head_converts_and_tags_as_the_authors(heads_dir, heads_reference):
    """BatchNorm (running statistics) + Linear on the frequency-averaged clip embedding of
    992-frame chunks, 527 labels in `mid` order; the 10 s clip spans two chunks."""
    from matpac_keras.convert import classifier_from_state_dict
    from matpac_keras.embedding import EmbeddingExtractor, bucketed_embeddings

    model = classifier_from_state_dict(_state(heads_dir / "as_enc_and_head.pt"), num_heads=2)
    assert (model.num_classes, model.pooling, model.multi_label) == (527, "freq_mean", True)
    assert model.backbone.max_frames == 992 and model.head_norm is not None
    assert model.labels[:2] == ("Firecracker", "Timpani")  # sorted by mid, not by index
    for key, waveforms in (("as", "waveform"), ("as_long", "waveform_long")):
        _check_tags(model, heads_reference[waveforms], heads_reference, key)
        pooled = bucketed_embeddings(
            EmbeddingExtractor(model.backbone), list(heads_reference[waveforms])
        )
        embedding = pooled.reshape(len(pooled), 5, -1).mean(axis=1)
        assert relative_error(embedding, heads_reference[f"{key}/embedding"]) < 1e-4


@pytest.mark.parametrize("task", HEADS_TASKS)
def test_probe_heads_convert_and_tag_as_the_authors(
    task, heads_dir, heads_reference, encoder_only_state
):
    from matpac_keras.class_mappings import task_labels
    from matpac_keras.convert import classifier_from_state_dict

    probe = _state(heads_dir / f"probe_{task}.pth")
    model = classifier_from_state_dict(encoder_only_state, probe, task, num_heads=4)
    assert model.pooling == "concat" and model.head_norm is None
    assert model.labels == task_labels(task)
    _check_tags(model, heads_reference["waveform"], heads_reference, task)


def test_heads_that_disagree_with_task_or_encoder_are_refused(heads_dir, encoder_only_state):
    from matpac_keras.convert import classifier_from_state_dict

    probe = _state(heads_dir / "probe_esc50.pth")
    with pytest.raises(
        CheckpointMismatchError, match=r"\[50, 640\]: 50 outputs, but task 'openmic' has 20"
    ):
        classifier_from_state_dict(encoder_only_state, probe, "openmic", num_heads=4)
    narrow = {"probe.weight": probe["probe.weight"][:, :320], "probe.bias": probe["probe.bias"]}
    with pytest.raises(
        CheckpointMismatchError,
        match=r"\[50, 320\]: 320 inputs, but the encoder's clip embedding \(5 x 128\) has 640",
    ):
        classifier_from_state_dict(encoder_only_state, narrow, "esc50", num_heads=4)
    with pytest.raises(CheckpointMismatchError, match="no classification head"):
        classifier_from_state_dict(encoder_only_state)
    with pytest.raises(CheckpointMismatchError, match="has its own head"):
        classifier_from_state_dict(_state(heads_dir / "as_enc_and_head.pt"), probe, "esc50")
    with pytest.raises(InputError, match="task 'birds': not one of"):
        classifier_from_state_dict(encoder_only_state, probe, "birds", num_heads=4)
    with pytest.raises(CheckpointMismatchError, match="not a probe head: tensor 'probe.bias'"):
        classifier_from_state_dict(
            encoder_only_state, {"probe.weight": probe["probe.weight"]}, "esc50", num_heads=4
        )


def test_converted_tagger_preset_keeps_labels_and_tags_waveforms(
    heads_dir, heads_reference, tmp_path
):
    from matpac_keras.audio_classifier import MatpacAudioClassifier
    from matpac_keras.convert import classifier_from_state_dict

    model = classifier_from_state_dict(_state(heads_dir / "as_enc_and_head.pt"), num_heads=2)
    model.save_to_preset(tmp_path / "tagger")
    loaded = MatpacAudioClassifier.from_preset(str(tmp_path / "tagger"))
    assert loaded.labels == model.labels and loaded.multi_label
    _check_tags(loaded, heads_reference["waveform"], heads_reference, "as")
    # predict: waveforms of one length (at most one chunk) through the preprocessor; 30960
    # samples are 192 frames, whole patches, which the precise clip embedding does not pad
    waveforms = heads_reference["waveform"][:, :30960]
    logits = loaded.predict(waveforms, verbose=0)
    expected = model.clip_logits(list(waveforms))
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
