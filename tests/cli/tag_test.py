"""`matpac-convert` then `matpac-tag`, as docs/tag.md tells a user to run them.

The authors' AudioSet tagger of the fixtures tags the fixture clips with their probabilities
(heads.npz, --activation=softmax); their ESC-50 probe head on the fixture encoder tags real
recordings (FSDD) from a folder and a list file, with an unreadable file skipped.
"""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from matpac_keras.class_mappings import task_labels
from tests.cli.run_cli import no_keras_env, run_cli

pytestmark = pytest.mark.single_backend


@pytest.fixture(scope="module")
def as_tagger(fixtures_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "as_tagger"
    checkpoint = fixtures_dir / "heads" / "as_enc_and_head.pt"
    run_cli("convert", f"--checkpoint={checkpoint}", "--num_heads=2", f"--output={out}")
    return out


@pytest.fixture(scope="module")
def heads(fixtures_dir):
    with np.load(fixtures_dir / "heads" / "heads.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


def test_audioset_tagger_tags_as_the_authors(as_tagger, heads, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i, waveform in enumerate([*heads["waveform"], *heads["waveform_long"]]):
        sf.write(clips / f"clip{i}.wav", waveform, 16000, subtype="FLOAT")
    out = tmp_path / "tags.npz"
    done = run_cli(
        "tag", f"--model={as_tagger}", "--activation=softmax", f"--output={out}", str(clips)
    )
    with np.load(out) as tags:
        names = [os.path.basename(f) for f in tags["files"]]
        assert names == [f"clip{i}.wav" for i in range(6)]  # the folder, sorted
        assert tags["labels"].tolist() == list(task_labels("audioset"))
        probabilities = tags["probabilities"]
    reference = np.concatenate([heads["as/probs"], heads["as_long/probs"]])
    np.testing.assert_allclose(probabilities, reference, atol=1e-5, rtol=0)
    lines = done.stdout.strip().splitlines()
    authors = np.concatenate([heads["as/labels"], heads["as_long/labels"]])
    top5 = np.concatenate([heads["as/top5"], heads["as_long/top5"]])
    for clip in range(6):  # the table: the file, then its top 5 (probability, label)
        block = lines[clip * 6 : clip * 6 + 6]
        assert block[0] == str(clips / f"clip{clip}.wav")
        shown = [line.split(maxsplit=1) for line in block[1:]]
        assert [label for _, label in shown] == [a.rsplit(" (", 1)[0] for a in authors[clip]]
        assert [p for p, _ in shown] == [f"{p:.3f}" for p in reference[clip, top5[clip]]]
    assert lines[-1] == f"tagged 6 clips with 527 labels (softmax); wrote {out}"
    # --runtime=openvino: exported by the first run; the second, with TensorFlow, Keras, JAX
    # and torch unimportable, runs the cached encoder and the head in NumPy, as the authors.
    cache = {"MATPAC_ENCODER_CACHE": str(tmp_path / "cache")}
    for run, env in enumerate([{}, no_keras_env(tmp_path / "shim")]):
        runtime = tmp_path / f"runtime{run}.npz"
        run_cli("tag", f"--model={as_tagger}", "--activation=softmax", "--runtime=openvino",
                f"--output={runtime}", str(clips), **env, **cache)  # fmt: skip
        with np.load(runtime) as tags:
            np.testing.assert_allclose(tags["probabilities"], reference, atol=1e-5, rtol=0)
            np.testing.assert_allclose(tags["probabilities"], probabilities, atol=2e-6, rtol=0)


def test_probe_head_tags_real_recordings_from_a_folder_and_a_list(
    fixtures_dir, fsdd_recordings, tmp_path
):
    tagger = tmp_path / "esc50_tagger"
    run_cli(
        "convert",
        f"--checkpoint={fixtures_dir / 'encoder_only.pt'}",
        f"--probe={fixtures_dir / 'heads' / 'probe_esc50.pth'}",
        "--task=esc50",
        "--num_heads=4",
        f"--output={tagger}",
    )
    folder = tmp_path / "digits"
    folder.mkdir()
    for name in ("0_jackson_0.wav", "1_nicolas_1.wav"):
        os.symlink(fsdd_recordings / name, folder / name)
    (tmp_path / "list.txt").write_text(
        f"# more clips\n{fsdd_recordings / '7_theo_3.wav'}\n\nmissing.wav\n"
    )
    out = tmp_path / "tags.json"
    done = run_cli(
        "tag",
        f"--model={tagger}",
        "--top_k=3",
        "--skip_errors",
        "--notable",
        f"--input_list={tmp_path / 'list.txt'}",
        f"--output={out}",
        str(folder),
    )
    tags = json.loads(out.read_text())
    assert [os.path.basename(t["file"]) for t in tags] == [
        "0_jackson_0.wav",
        "1_nicolas_1.wav",
        "7_theo_3.wav",
    ]
    esc50 = set(task_labels("esc50"))
    for clip in tags:
        assert len(clip["labels"]) == 3 and set(clip["labels"]) <= esc50
        assert clip["probabilities"] == sorted(clip["probabilities"], reverse=True)
        assert 0 < sum(clip["probabilities"]) <= 1 + 1e-6  # softmax: a single-label head
    assert done.stdout.strip() == f"tagged 3 clips with 50 labels (softmax), 1 skipped; wrote {out}"
    assert "missing.wav" in done.stderr


def test_bad_arguments_are_named(as_tagger, fixtures_dir, tmp_path):
    clip = tmp_path / "a.wav"
    sf.write(clip, np.zeros(16000, "float32"), 16000)
    failed = run_cli(
        "tag", f"--model={as_tagger}", f"--output={tmp_path / 't.csv'}", str(clip), ok=False
    )
    assert "Error: --output" in failed.stderr and "name a .json or an .npz file" in failed.stderr
    failed = run_cli("tag", f"--model={as_tagger}", ok=False)
    assert "give audio files or folders after the flags, or --input_list" in failed.stderr
    backbone = tmp_path / "backbone"
    run_cli("convert", f"--checkpoint={fixtures_dir / 'encoder_only.pt'}", f"--output={backbone}")
    failed = run_cli("tag", f"--model={backbone}", str(clip), ok=False)
    assert failed.stderr.strip().splitlines()[-1] == (
        f"Error: {backbone}: a backbone preset without a classification head (no task.json); a "
        "classifier is written by matpac-convert (an enc_and_head checkpoint, or --probe) or by "
        "matpac-finetune (classifier.keras)"
    )
    failed = run_cli("tag", f"--model={as_tagger}", "--crop_frames=40", str(clip), ok=False)
    assert "--crop_frames: crop_frames must be a multiple of 16" in failed.stderr


def test_help_shows_the_command_and_its_flags():
    shown = run_cli("tag", "--help", ok=False).stdout  # absl exits with status 1 after --help
    for text in ("matpac-tag --model as_tagger a.wav b.flac", "--top_k", "--activation"):
        assert text in shown
    for text in ("--skip_errors", "--input_list", "--output", "tags.npz"):
        assert text in shown
