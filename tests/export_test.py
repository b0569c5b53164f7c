"""`matpac-export`: a SavedModel loaded by a TensorFlow-only process gives `matpac-embed`'s output.

The models are made and saved under PyTorch and `matpac-embed` runs under JAX (each in its own
process: `python -m tests.export_test DIR` makes the models and audio); the CLI exports them
under TensorFlow; a process that imports TensorFlow and NumPy only serves them, and so does
`saved_model_cli`. TF Serving itself cannot be installed here and is not run.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.head_labels import load_head_labels, save_head_labels

pytestmark = [pytest.mark.single_backend, pytest.mark.slow]
on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="exports in this process: TensorFlow only"
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = [f"class_{i}" for i in range(7)]
TINY = dict(embed_dim=32, depth=2, num_heads=2, max_frames=128)
# 0.5 s: one short chunk (48 frames); 1.3 s: exactly one full chunk (128 frames); 4.1 s: 408
# frames, i.e. three full chunks and a short one of 32 frames (precise) or four full ones (fast).
LENGTHS = (8000, 20800, 65600)
CLIPS = 3  # per length; the SavedModel sees batches of the first 1 and of all 3
CROP_FRAMES = 64

# Run in its own process: TensorFlow and NumPy only; importing matpac_keras is made to fail.
TF_ONLY_SCRIPT = """
import json, sys


class BlockMatpac:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matpac_keras":
            raise ImportError("this process must not use matpac_keras")


sys.meta_path.insert(0, BlockMatpac())
import numpy as np
import tensorflow as tf

saved_model, inputs, output = sys.argv[1:]
model = tf.saved_model.load(saved_model)
results = {}
with np.load(inputs) as waveforms:
    for name in waveforms.files:
        for batch in (1, 3):
            for signature, function in model.signatures.items():
                outputs = function(waveform=tf.constant(waveforms[name][:batch]))
                for key, value in outputs.items():
                    value = value.numpy()  # strings come back as bytes objects: store unicode
                    value = value.astype(str) if value.dtype == object else value
                    results[f"{signature}/{name}/{batch}/{key}"] = value
np.savez(output, **results)
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "matpac_keras")
print(json.dumps({"signatures": sorted(model.signatures), "loaded": loaded}))
"""


def make_models(folder: str) -> None:
    """Saves a backbone, a probe, a fine-tuned-style classifier (with label files), and clips
    as `clips/n{length}_{i}.wav` and `waveforms.npz` (`n{length}`: [CLIPS, length])."""
    import soundfile

    from matpac_keras.audio_classifier import MatpacAudioClassifier

    keras.utils.set_random_seed(1)
    backbone = MatpacBackbone(**TINY)
    backbone.build(None)
    backbone.save(os.path.join(folder, "model.keras"))
    probe = keras.Sequential([keras.Input((5 * 32,)), keras.layers.Dense(len(LABELS))])
    classifier = MatpacAudioClassifier(MatpacBackbone(**TINY), num_classes=len(LABELS), dropout=0.5)
    classifier.build(None)
    for name, head in (("head", probe), ("classifier", classifier)):
        head.save(os.path.join(folder, f"{name}.keras"))
        save_head_labels(os.path.join(folder, f"{name}.keras"), LABELS, "softmax")
    rng = np.random.default_rng(0)
    waveforms = {f"n{n}": rng.uniform(-0.5, 0.5, (CLIPS, n)).astype("float32") for n in LENGTHS}
    os.makedirs(os.path.join(folder, "clips"))
    for name, clips in waveforms.items():
        for i, clip in enumerate(clips):
            path = os.path.join(folder, "clips", f"{name}_{i}.wav")
            soundfile.write(path, clip, 16000, subtype="FLOAT")
    np.savez(os.path.join(folder, "waveforms.npz"), **waveforms)


def _run(*command: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
    )
    assert (result.returncode == 0) == ok, result.stderr[-3000:]
    return result


def _export(*flags: str, ok: bool = True) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "matpac_keras.cli.export", *flags, ok=ok)


def _saved_model_cli(*args: str) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *args)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Models and clips saved under PyTorch, and their `matpac-embed` embeddings under JAX."""
    folder = tmp_path_factory.mktemp("export")
    _run(sys.executable, "-m", "tests.export_test", str(folder), KERAS_BACKEND="torch")
    clips = sorted(str(path) for path in (folder / "clips").iterdir())
    embed = ("-m", "matpac_keras.cli.embed", f"--model={folder / 'model.keras'}", "--layers")
    _run(sys.executable, *embed, f"--output={folder / 'embed.npz'}", *clips, KERAS_BACKEND="jax")
    return folder


@pytest.fixture(scope="module")
def waveforms(folder):
    with np.load(folder / "waveforms.npz") as arrays:
        return dict(arrays)


@pytest.fixture(scope="module")
def embedded(folder):
    """`matpac-embed`'s embeddings [CLIPS, ...] and layers per length, by `n{length}`."""
    with np.load(folder / "embed.npz") as out:
        names = [os.path.basename(path).split("_")[0] for path in out["files"]]
        rows = {name: [i for i, n in enumerate(names) if n == name] for name in set(names)}
        return {name: (out["embeddings"][r], out["layers"][r]) for name, r in rows.items()}


@pytest.fixture(scope="module")
def served(folder):
    """The precise SavedModel with layers and the probe, run by the TensorFlow-only process."""
    out = folder / "saved_model"
    _export(
        f"--model={folder / 'model.keras'}",
        f"--output={out}",
        "--layers",
        "--head",
        str(folder / "head.keras"),
    )
    results = folder / "served.npz"
    run = _run(
        sys.executable, "-c", TF_ONLY_SCRIPT, str(out), str(folder / "waveforms.npz"), str(results)
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    with np.load(results) as arrays:
        return out, report, dict(arrays)


def test_served_embeddings_equal_matpac_embed(waveforms, embedded, served):
    _, report, outputs = served
    assert report == {"signatures": ["classify", "serving_default"], "loaded": []}
    for name in waveforms:
        embedding, layers = embedded[name]
        assert embedding.shape == (CLIPS, 160) and layers.shape == (CLIPS, 2, 160)
        for batch in (1, 3):
            got = outputs[f"serving_default/{name}/{batch}/embedding"]
            assert got.shape == (batch, 160)
            np.testing.assert_allclose(got, embedding[:batch], atol=1e-4, err_msg=name)
            got = outputs[f"serving_default/{name}/{batch}/layers"]
            np.testing.assert_allclose(got, layers[:batch], atol=1e-4, err_msg=name)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _check_classify(outputs: dict, prefix: str, expected: np.ndarray) -> None:
    np.testing.assert_allclose(outputs[f"{prefix}/probabilities"], expected, atol=1e-5)
    order = np.argsort(-expected, axis=1)[:, :5]
    np.testing.assert_array_equal(outputs[f"{prefix}/top_labels"], np.array(LABELS)[order])
    np.testing.assert_allclose(
        outputs[f"{prefix}/top_probabilities"], np.take_along_axis(expected, order, 1), atol=1e-5
    )


def test_classify_signature(folder, waveforms, embedded, served):
    from matpac_keras.saving import load_model

    head = load_model(folder / "head.keras")
    for name in waveforms:
        expected = _softmax(keras.ops.convert_to_numpy(head(embedded[name][0])))
        for batch in (1, 3):
            _check_classify(served[2], f"classify/{name}/{batch}", expected[:batch])


def test_saved_model_cli_shows_and_runs(waveforms, embedded, served, tmp_path):
    out = str(served[0])
    shown = _saved_model_cli("show", "--all", "--dir", out).stdout
    for expected in (
        "signature_def['serving_default']:",
        "signature_def['classify']:",
        "inputs['waveform'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, -1)",
        "outputs['embedding'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 160)",
        "outputs['layers'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 2, 160)",
        "outputs['top_labels'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1, 5)",
        "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 7)",
    ):
        assert expected in shown, expected
    # TF 2.21's saved_model_cli takes only literals in --input_exprs: the input goes in a file.
    np.save(tmp_path / "waveform.npy", waveforms["n8000"])
    _saved_model_cli(
        "run",
        *("--dir", out, "--tag_set", "serve", "--signature_def", "serving_default"),
        *("--inputs", f"waveform={tmp_path / 'waveform.npy'}", "--outdir", str(tmp_path)),
    )
    embedding, layers = embedded["n8000"]
    np.testing.assert_allclose(np.load(tmp_path / "embedding.npy"), embedding, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "layers.npy"), layers, atol=1e-4)


@on_tensorflow
def test_fast_mode_and_fine_tuned_classifier_crops(folder, waveforms, tmp_path):
    import tensorflow as tf

    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.export import export_saved_model
    from matpac_keras.saving import load_backbone, load_model

    backbone = load_backbone(folder / "model.keras")
    classifier = load_model(folder / "classifier.keras")
    labels = load_head_labels(folder / "classifier.keras")
    signatures = export_saved_model(
        backbone, tmp_path, "fast", head=classifier, head_labels=labels, crop_frames=CROP_FRAMES
    )
    assert signatures == ["serving_default", "classify"]
    model = tf.saved_model.load(str(tmp_path))
    fast, precise = (EmbeddingExtractor(backbone, mode=mode) for mode in ("fast", "precise"))
    for name, waves in waveforms.items():
        expected = fast.embed_waveforms(waves).embedding
        got = model.signatures["serving_default"](waveform=tf.constant(waves))["embedding"]
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, err_msg=name)
        if name != "n20800":  # one full chunk of 128 frames: the same in both modes
            assert np.abs(expected - precise.embed_waveforms(waves).embedding).max() > 1e-3
        outputs = model.signatures["classify"](waveform=tf.constant(waves))
        outputs = {f"c/{key}": value.numpy() for key, value in outputs.items()}
        outputs["c/top_labels"] = outputs["c/top_labels"].astype(str)
        crops = _softmax(classifier.clip_logits(list(waves), crop_frames=CROP_FRAMES))
        _check_classify(outputs, "c", crops)
        whole = _softmax(classifier.clip_logits(list(waves)))  # no crops: differs
        assert np.abs(whole - crops).max() > 1e-4, name


@on_tensorflow
def test_bad_heads_are_refused(folder):
    from matpac_keras.export import check_head
    from matpac_keras.head_labels import HeadLabels
    from matpac_keras.saving import load_backbone, load_model

    backbone, probe = load_backbone(folder / "model.keras"), load_model(folder / "head.keras")
    classifier = load_model(folder / "classifier.keras")
    labels = HeadLabels(tuple(LABELS), "softmax")
    with pytest.raises(ValueError, match="but there are 2 labels"):
        check_head(probe, HeadLabels(("a", "b"), "sigmoid"), backbone)
    wide = MatpacBackbone(embed_dim=48, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"cannot take this backbone's embeddings \[batch, 240\]"):
        check_head(probe, labels, wide)
    with pytest.raises(ValueError, match="crop_frames needs a MatpacAudioClassifier head"):
        check_head(probe, labels, backbone, crop_frames=64)
    with pytest.raises(ValueError, match="a multiple of 16 up to the backbone's max_frames 128"):
        check_head(classifier, labels, wide, crop_frames=40)
    check_head(classifier, labels, wide, crop_frames=128)  # its own backbone, not `wide`


def test_cli_names_bad_arguments(folder, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    failed = _export(f"--model={folder / 'model.keras'}", f"--output={busy}", ok=False)
    assert "--output" in failed.stderr and "is not empty" in failed.stderr
    failed = _export(
        f"--model={folder / 'model.keras'}",
        f"--output={tmp_path / 'o'}",
        "--crop_frames=64",
        ok=False,
    )
    assert "--crop_frames and --activation need --head or a classifier --model" in failed.stderr
    unlabelled = tmp_path / "unlabelled.keras"
    keras.Sequential([keras.Input((160,)), keras.layers.Dense(len(LABELS))]).save(unlabelled)
    failed = _export(
        f"--model={folder / 'model.keras'}",
        f"--output={tmp_path / 'o'}",
        f"--head={unlabelled}",
        ok=False,
    )
    assert f"--head {unlabelled}: no label file at" in failed.stderr
    narrow = tmp_path / "narrow.keras"
    keras.Sequential([keras.Input((240,)), keras.layers.Dense(len(LABELS))]).save(narrow)
    save_head_labels(narrow, LABELS, "softmax")
    failed = _export(
        f"--model={folder / 'model.keras'}",
        f"--output={tmp_path / 'o'}",
        f"--head={narrow}",
        ok=False,
    )
    assert f"--head {narrow}: the head cannot take this backbone's embeddings" in failed.stderr
    assert not (tmp_path / "o").exists()


def test_cli_replaces_an_export_only_with_overwrite(folder, tmp_path):
    """--output: checked before any model is read, written whole, replaced only when asked."""
    missing = tmp_path / "missing.keras"
    version = tmp_path / "matpac" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_text("an older export")
    failed = _export(f"--model={missing}", f"--output={version}", ok=False)  # model not read
    assert failed.stderr.strip().splitlines() == [
        f"Error: --output {version}: already exists and is not empty (pass --overwrite to "
        "replace it)"
    ]
    failed = _export(
        f"--model={missing}", f"--output={folder / 'model.keras'}", "--overwrite", ok=False
    )
    assert failed.stderr.strip() == (
        f"Error: --output {folder / 'model.keras'}: is a file; a folder is written here"
    )
    done = _export(f"--model={folder / 'model.keras'}", f"--output={version}", "--overwrite")
    assert done.stdout.strip().splitlines()[-1] == (
        f"wrote {version}: signatures serving_default (mode precise)"
    )
    assert sorted(os.listdir(version)) == [
        "assets",
        "fingerprint.pb",
        "saved_model.pb",
        "variables",
    ]
    assert os.listdir(version.parent) == ["1"]  # no temporary or old folder left beside it
    umask = os.umask(0)
    os.umask(umask)  # the folder has the umask's permissions (not 0700): TF Serving reads it
    assert os.stat(version).st_mode & 0o777 == 0o777 & ~umask


@on_tensorflow
def test_saved_model_refuses_bad_waveforms(tmp_path):
    # Before: NaN/Inf gave NaN embeddings, a 1-D input failed in `strided_slice`, a 3-D one
    # was embedded. The signature's declared [None, None] does not bind the rank at run time.
    import tensorflow as tf

    from matpac_keras.export import export_saved_model

    keras.utils.set_random_seed(2)
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=32)
    backbone.build(None)
    export_saved_model(backbone, tmp_path)
    serve = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    good = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4000)).astype("float32")
    assert np.isfinite(serve(waveform=tf.constant(good))["embedding"].numpy()).all()
    nan, inf = good.copy(), good.copy()
    nan[1, 100], inf[0, 3999] = np.nan, -np.inf
    for bad, message in (
        (good[0], r"waveform must be \[batch, samples\]; got rank\] \[1\]"),
        (good[None], r"waveform must be \[batch, samples\]; got rank\] \[3\]"),
        (nan, "waveform contains NaN or infinite values"),
        (inf, "waveform contains NaN or infinite values"),
        (good[:, :399], r"waveform must have at least 400 samples"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(waveform=tf.constant(bad))


if __name__ == "__main__":
    make_models(sys.argv[1])


@on_tensorflow
def test_converted_authors_tagger_exports_its_labels(fixtures_dir, tmp_path):
    """The authors' AudioSet tagger, converted to a preset, exports as `--model` alone: its
    `classify` signature names its 527 labels; with --activation=softmax its probabilities are
    the authors' (heads.npz), the 10 s clip (two 992-frame chunks) included."""
    import tensorflow as tf

    from matpac_keras.convert import classifier_from_state_dict
    from matpac_keras.export import export_saved_model
    from matpac_keras.torch_checkpoint import find_state_dict, load_torch_checkpoint

    state = find_state_dict(load_torch_checkpoint(fixtures_dir / "heads" / "as_enc_and_head.pt"))
    tagger = classifier_from_state_dict(state, num_heads=2)
    tagger.save_to_preset(tmp_path / "as_tagger")
    done = _export(
        f"--model={tmp_path / 'as_tagger'}",
        f"--output={tmp_path / 'softmax'}",
        "--activation=softmax",
    )
    assert "signatures serving_default, classify" in done.stdout
    with np.load(fixtures_dir / "heads" / "heads.npz") as heads:
        for waves, key in (("waveform", "as"), ("waveform_long", "as_long")):
            served = tf.saved_model.load(str(tmp_path / "softmax")).signatures["classify"]
            outputs = served(waveform=tf.constant(heads[waves]))
            np.testing.assert_allclose(outputs["probabilities"], heads[f"{key}/probs"], atol=1e-5)
            names = np.array(tagger.labels)[heads[f"{key}/top5"]]
            assert outputs["top_labels"].numpy().astype(str).tolist() == names.tolist()
        # The library, the classifier's own labels and default activation: sigmoid (multi-label).
        assert export_saved_model(tagger.backbone, tmp_path / "sigmoid", head=tagger) == [
            "serving_default",
            "classify",
        ]
        served = tf.saved_model.load(str(tmp_path / "sigmoid")).signatures["classify"]
        got = served(waveform=tf.constant(heads["waveform"]))["probabilities"].numpy()
        logits = tagger.clip_logits(list(heads["waveform"]))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), atol=1e-5)


@on_tensorflow
@pytest.mark.parametrize(
    "mode, seconds, hop, aggregate, layers",
    [("precise", 0.5, 0.32, "mean+max", True), ("fast", 0.64, None, "max", False)],
)
def test_temporal_support_export_equals_the_embedder(
    tmp_path, mode, seconds, hop, aggregate, layers
):
    """Windows of a temporal support in the graph: the Python embedder's embedding (and layers)
    within 1e-4, for one short window, several with overlap, and a long clip."""
    import tensorflow as tf

    from matpac_keras.embedding import EmbeddingExtractor
    from matpac_keras.export import export_saved_model

    keras.utils.set_random_seed(2)
    backbone = MatpacBackbone(**TINY)
    backbone.build(None)
    windows = dict(temporal_support=seconds, hop=hop, aggregate=aggregate)
    export_saved_model(backbone, tmp_path, mode, layers, **windows)
    serve = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    extractor = EmbeddingExtractor(backbone, mode=mode, layers=layers, **windows)
    width = 320 if aggregate == "mean+max" else 160
    rng = np.random.default_rng(3)
    for length in (400, 8000, 20_800, 65_600):  # 1, 48, 128 and 408 frames
        waves = rng.uniform(-0.5, 0.5, (2, length)).astype("float32")
        expected = extractor.embed_waveforms(waves)
        got = serve(waveform=tf.constant(waves))
        assert got["embedding"].shape == (2, width)
        np.testing.assert_allclose(got["embedding"], expected.embedding, atol=1e-4, err_msg=length)
        if layers:
            np.testing.assert_allclose(got["layers"], expected.layers, atol=1e-4)


@on_tensorflow
def test_cli_temporal_support_flags(tmp_path):
    """matpac-export --temporal_support --hop --aggregate, with a probe on the 2 F*D-wide
    mean+max embedding; values out of range are refused naming the flag, before any export."""
    import tensorflow as tf

    from matpac_keras.embedding import EmbeddingExtractor

    keras.utils.set_random_seed(4)
    backbone = MatpacBackbone(**TINY)
    backbone.build(None)
    backbone.save(tmp_path / "model.keras")
    probe = keras.Sequential([keras.Input((320,)), keras.layers.Dense(len(LABELS))])
    probe.save(tmp_path / "probe.keras")
    save_head_labels(tmp_path / "probe.keras", LABELS, "softmax")
    flags = ("--temporal_support=0.5", "--hop=0.16", "--aggregate=mean+max")
    model = f"--model={tmp_path / 'model.keras'}"
    _export(model, f"--output={tmp_path / 'out'}", f"--head={tmp_path / 'probe.keras'}", *flags)
    signatures = tf.saved_model.load(str(tmp_path / "out")).signatures
    waves = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 30_000)).astype("float32")
    extractor = EmbeddingExtractor(backbone, temporal_support=0.5, hop=0.16, aggregate="mean+max")
    expected = extractor.embed_waveforms(waves).embedding
    got = signatures["serving_default"](waveform=tf.constant(waves))["embedding"]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    probabilities = signatures["classify"](waveform=tf.constant(waves))["probabilities"]
    logits = keras.ops.convert_to_numpy(probe(expected))
    np.testing.assert_allclose(probabilities, _softmax(logits), atol=1e-5)
    failed = _export(model, f"--output={tmp_path / 'o'}", "--temporal_support=1.5", ok=False)
    assert failed.stderr.strip().splitlines()[-1] == (
        "Error: --temporal_support must be from 0.16 s (one patch column of 16 frames) up to "
        "the model's max_frames, 1.28 s (128 frames); got 1.5"
    )
    narrow = (f"--head={tmp_path / 'probe.keras'}", "--temporal_support=0.5")
    failed = _export(model, f"--output={tmp_path / 'o'}", *narrow, ok=False)
    assert "the head cannot take this backbone's embeddings [batch, 160]" in failed.stderr
    assert not (tmp_path / "o").exists()
