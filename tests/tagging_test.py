"""Tagging files with a classifier (`matpac_keras.tagging`), against the authors' own outputs.

The authors' AudioSet tagger of the fixtures (`fixtures/heads/as_enc_and_head.pt`: encoder +
BatchNorm + Linear on the frequency-averaged embedding) tags the fixture clips, written as
float wav files, with the probabilities of their `probe_forward` (heads.npz) under softmax; the
10 s clip spans two 992-frame chunks and is streamed from its file.
"""

import json

import numpy as np
import pytest
import soundfile as sf

from matpac_keras.audio_classifier import MatpacAudioClassifier, top_k_labels
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.errors import InputError
from matpac_keras.head_labels import save_head_labels
from matpac_keras.saving import is_classifier, load_classifier
from matpac_keras.tagging import Tags, tag_files


@pytest.fixture(scope="module")
def heads(fixtures_dir):
    with np.load(fixtures_dir / "heads" / "heads.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.fixture(scope="module")
def tagger(fixtures_dir):
    from matpac_keras.convert import classifier_from_state_dict
    from matpac_keras.torch_checkpoint import find_state_dict, load_torch_checkpoint

    state = find_state_dict(load_torch_checkpoint(fixtures_dir / "heads" / "as_enc_and_head.pt"))
    return classifier_from_state_dict(state, num_heads=2)


@pytest.fixture(scope="module")
def clip_files(heads, tmp_path_factory):
    """The 5 two-second fixture clips and the 10 s one, as float32 wav files (exact samples)."""
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i, waveform in enumerate([*heads["waveform"], *heads["waveform_long"]]):
        paths.append(str(folder / f"clip{i}.wav"))
        sf.write(paths[-1], waveform, 16000, subtype="FLOAT")
    return paths


def test_files_tag_as_the_authors(tagger, heads, clip_files):
    tags = tag_files(tagger, clip_files, activation="softmax", batch_size=2)
    reference = np.concatenate([heads["as/probs"], heads["as_long/probs"]])
    np.testing.assert_allclose(tags.probabilities, reference, atol=1e-5, rtol=0)
    top5 = np.concatenate([heads["as/top5"], heads["as_long/top5"]])
    np.testing.assert_array_equal(np.argsort(-tags.probabilities, 1, kind="stable")[:, :5], top5)
    authors = np.concatenate([heads["as/labels"], heads["as_long/labels"]]).tolist()
    assert [[f"{name} ({p:.2f})" for name, p in top] for top in tags.top(5)] == authors
    assert tags.files == tuple(clip_files) and len(tags.labels) == 527
    assert tags.labels[:2] == ("Firecracker", "Timpani")  # sorted by mid, as the authors'


def test_multi_label_heads_default_to_sigmoid(tagger, clip_files):
    tags = tag_files(tagger, clip_files[:2])
    assert tags.activation == "sigmoid"
    logits = tagger.clip_logits([sf.read(p, dtype="float32")[0] for p in clip_files[:2]])
    np.testing.assert_allclose(tags.probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)


def test_outputs_json_npz_and_table(tmp_path):
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]], "float32")
    tags = Tags(
        ("a.wav", "b.wav"), ("dog", "rain", "car"), probabilities, "softmax", {1: ("x.wav", "bad")}
    )
    tags.write(tmp_path / "t.json", 2, "json")
    assert json.loads((tmp_path / "t.json").read_text()) == [
        {
            "file": "a.wav",
            "labels": ["rain", "car"],
            "probabilities": [pytest.approx(0.7), pytest.approx(0.2)],
        },
        {"file": "b.wav", "labels": ["dog", "rain"], "probabilities": [0.5, 0.5]},  # ties: order
    ]
    tags.write(tmp_path / "t.npz", 2, "npz")
    with np.load(tmp_path / "t.npz") as out:
        assert out["files"].tolist() == ["a.wav", "b.wav"]
        assert out["labels"].tolist() == ["dog", "rain", "car"]
        np.testing.assert_array_equal(out["probabilities"], probabilities)  # every class
        assert out["skipped"].tolist() == ["x.wav"] and out["errors"].tolist() == ["bad"]
        assert str(out["activation"]) == "softmax"
    assert tags.table(1).splitlines() == ["a.wav", "   0.700  rain", "b.wav", "   0.500  dog"]
    with pytest.raises(ValueError, match="fmt must be"):
        tags.write(tmp_path / "t.csv", 2, "csv")


def test_top_k_labels_order_and_ties():
    got = top_k_labels(np.array([[0.2, 0.9, 0.2, 0.1]]), ("a", "b", "c", "d"), 3)
    assert got == [[("b", 0.9), ("a", 0.2), ("c", 0.2)]]


def _classifier(**kwargs):
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=64)
    return MatpacAudioClassifier(backbone, num_classes=3, **kwargs)


def test_unreadable_files_are_named_or_skipped(tmp_path, clip_files):
    model = _classifier(labels=["a", "b", "c"])
    missing = str(tmp_path / "missing.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEnot audio")
    with pytest.raises(InputError, match="missing.wav"):
        tag_files(model, [clip_files[0], missing])
    tags = tag_files(model, [missing, clip_files[0], str(broken)], skip_errors=True)
    assert tags.files == (clip_files[0],) and sorted(tags.skipped) == [0, 2]
    assert tags.skipped[0][0] == missing and str(broken) in tags.skipped[2][0]
    with pytest.raises(InputError, match="no readable audio among the 2 files"):
        tag_files(model, [missing, str(broken)], skip_errors=True)


def test_crop_frames_score_as_clip_logits(clip_files):
    model = _classifier(crop_frames=32)
    waves = [sf.read(p, dtype="float32")[0] for p in clip_files[:3]]
    tags = tag_files(model, clip_files[:3], activation="softmax")
    np.testing.assert_allclose(
        tags.probabilities, model.probabilities(model.clip_logits(waves), "softmax"), atol=1e-6
    )
    whole = tag_files(model, clip_files[:3], activation="softmax", crop_frames=64)
    assert np.abs(whole.probabilities - tags.probabilities).max() > 1e-4
    with pytest.raises(ValueError, match="crop_frames must be a multiple of 16 up to"):
        _classifier(crop_frames=40)


def test_load_classifier_from_preset_keras_and_label_file(tagger, tmp_path):
    tagger.save_to_preset(tmp_path / "tagger")
    assert is_classifier(tmp_path / "tagger")
    loaded = load_classifier(tmp_path / "tagger")
    assert loaded.labels == tagger.labels and loaded.multi_label
    tagger.backbone.save_to_preset(tmp_path / "backbone")
    assert not is_classifier(tmp_path / "backbone")
    with pytest.raises(InputError, match="backbone preset without a classification head"):
        load_classifier(tmp_path / "backbone")
    # Saved without labels: those of NAME.labels.json beside it, and its activation.
    plain = _classifier()
    plain.save(tmp_path / "plain.keras")
    assert load_classifier(tmp_path / "plain.keras").label_names == (
        "class 0",
        "class 1",
        "class 2",
    )
    save_head_labels(tmp_path / "plain.keras", ["x", "y", "z"], "sigmoid")
    loaded = load_classifier(tmp_path / "plain.keras")
    assert loaded.labels == ("x", "y", "z") and loaded.multi_label
    save_head_labels(tmp_path / "plain.keras", ["x", "y"], "softmax")
    with pytest.raises(InputError, match="2 labels for the 3 outputs"):
        load_classifier(tmp_path / "plain.keras")
    plain.backbone.save(tmp_path / "bb.keras")
    with pytest.raises(InputError, match="holds a MatpacBackbone, not a MatpacAudioClassifier"):
        load_classifier(tmp_path / "bb.keras")


def test_probabilities_follow_the_head_labels_activations():
    """One list of activations (`head_labels.ACTIVATIONS`) for labels files and probabilities."""
    model = _classifier()
    logits = np.array([[2.0, -1.0, 0.5]], "float32")
    np.testing.assert_allclose(model.probabilities(logits, "none"), logits)
    np.testing.assert_allclose(
        model.probabilities(logits, "sigmoid"), 1 / (1 + np.exp(-logits)), rtol=1e-6
    )
    softmax = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(model.probabilities(logits, "softmax"), softmax, rtol=1e-6)
    with pytest.raises(ValueError, match="activation must be one of"):
        model.probabilities(logits, "relu")
